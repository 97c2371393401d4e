// Raw HTTP against the service, Hawk-signed the way taskcluster-client signs (no payload hash),
// for the tests that must control what the client library would not let them: the timestamp,
// the nonce, `ext`, the content type, malformed bodies.
import assert from 'node:assert/strict';
import * as hawk from 'hawk';

export interface Credentials {
  clientId: string;
  accessToken: string;
  certificate?: string | object;
}

export interface RawRequest {
  method: string;
  /** Path under the root URL, e.g. `/api/queue/v1/ping`, already percent-encoded. */
  path: string;
  credentials?: Credentials;
  authorizedScopes?: string[];
  /** A JSON value (sent as application/json) or a string/Buffer sent as is. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Hawk overrides. */
  timestamp?: number;
  nonce?: string;
}

export interface RawResponse {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

/** The value of a Hawk `ext` carrying a certificate and/or authorizedScopes, as the client builds it. */
export function hawkExt(credentials: Credentials, authorizedScopes?: string[]): string | undefined {
  const ext: Record<string, unknown> = {};
  if (credentials.certificate) {
    ext.certificate = typeof credentials.certificate === 'string' ? JSON.parse(credentials.certificate) : credentials.certificate;
  }
  if (authorizedScopes) ext.authorizedScopes = authorizedScopes;
  return Object.keys(ext).length > 0 ? Buffer.from(JSON.stringify(ext)).toString('base64') : undefined;
}

export function hawkHeader(url: string, method: string, r: Pick<RawRequest, 'credentials' | 'authorizedScopes' | 'timestamp' | 'nonce'>): string {
  const c = r.credentials!;
  const ext = hawkExt(c, r.authorizedScopes);
  const { header } = hawk.client.header(url, method, {
    credentials: { id: c.clientId, key: c.accessToken, algorithm: 'sha256' },
    ...(ext ? { ext } : {}),
    ...(r.timestamp !== undefined ? { timestamp: r.timestamp } : {}),
    ...(r.nonce !== undefined ? { nonce: r.nonce } : {}),
  });
  return header;
}

export async function rawRequest(rootUrl: string, r: RawRequest): Promise<RawResponse> {
  const url = rootUrl + r.path;
  const headers: Record<string, string> = { ...r.headers };
  let body: string | Buffer | undefined;
  if (r.body !== undefined) {
    if (typeof r.body === 'string' || Buffer.isBuffer(r.body)) {
      body = r.body;
    } else {
      body = JSON.stringify(r.body);
      headers['content-type'] ??= 'application/json';
    }
  }
  if (r.credentials) headers.authorization = hawkHeader(url, r.method, r);
  // redirects are answers too (getArtifact's 303): never followed here
  const res = await fetch(url, { method: r.method, headers, body, redirect: 'manual' });
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').startsWith('application/json')) parsed = JSON.parse(text);
  return { status: res.status, headers: res.headers, body: parsed, text };
}

/** Asserts a taskcluster-client call fails with this status and error code. */
export async function rejectsWith(promise: Promise<unknown>, status: number, code: string, message?: RegExp): Promise<any> {
  let caught: any;
  await assert.rejects(promise, (err: any) => {
    caught = err;
    return true;
  });
  assert.equal(caught.statusCode, status, `expected ${status} ${code}, got ${caught.statusCode} ${caught.code}: ${caught.message}`);
  assert.equal(caught.code, code, `expected ${code}, got ${caught.code}: ${caught.message}`);
  if (message) assert.match(caught.message, message);
  return caught;
}

/** Asserts a raw response is a Taskcluster error body with this status and code. */
export function assertError(res: RawResponse, status: number, code: string): void {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${res.text.slice(0, 500)}`);
  assert.equal(res.body?.code, code, `expected ${code}: ${res.text.slice(0, 500)}`);
  assert.equal(typeof res.body.message, 'string');
  assert.equal(typeof res.body.requestInfo, 'object');
}
