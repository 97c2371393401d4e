// The lean load generator's HTTP client: an undici Pool of keep-alive connections and a Hawk header
// per request, nothing else. It measures the service, not a client library: its CPU shares the
// machine with the service, so it is kept cheap (undici over node:http, and the Hawk header built
// from hawk's own MAC function without hawk.client.header's URL parsing and random nonce per call).
import { randomBytes } from 'node:crypto';
import * as hawk from 'hawk';
import { Pool } from 'undici';

export interface Credentials {
  clientId: string;
  accessToken: string;
  /** JSON-encoded certificate of temporary credentials (as claimWork returns them) */
  certificate?: string;
}

export class HttpError extends Error {
  constructor(readonly status: number, readonly body: string, what: string) {
    super(`${what} answered ${status}: ${body.slice(0, 300)}`);
  }
}

// A nonce only has to be unique per (id, ts): a random prefix per process and a counter.
const noncePrefix = randomBytes(6).toString('base64url');
let nonceCounter = 0;

/**
 * The Hawk Authorization header taskcluster-client sends: id, ts, nonce, ext (temporary
 * credentials: base64 of {"certificate": <the certificate as an object>}), mac — no payload hash.
 */
export function hawkHeader(method: string, host: string, port: number, path: string, creds: Credentials): string {
  // the certificate string claimWork returned is JSON.stringify output, so embedding it as is
  // gives the bytes taskcluster-client's JSON.stringify({certificate: JSON.parse(…)}) gives
  const ext = creds.certificate ? Buffer.from(`{"certificate":${creds.certificate}}`).toString('base64') : undefined;
  const ts = Math.floor(Date.now() / 1000);
  const nonce = `${noncePrefix}${(nonceCounter++).toString(36)}`;
  const mac = hawk.crypto.calculateMac(
    'header',
    { id: creds.clientId, key: creds.accessToken, algorithm: 'sha256' },
    { method, host, port, resource: path, ts, nonce, ...(ext ? { ext } : {}) } as unknown as hawk.crypto.Artifacts,
  );
  return `Hawk id="${creds.clientId}", ts="${ts}", nonce="${nonce}"${ext ? `, ext="${ext}"` : ''}, mac="${mac}"`;
}

export class LeanClient {
  private readonly pool: Pool;
  private readonly host: string;
  private readonly port: number;

  constructor(rootUrl: string, connections: number) {
    const u = new URL(rootUrl);
    this.host = u.hostname;
    this.port = Number(u.port || 80);
    this.pool = new Pool(u.origin, { connections, keepAliveTimeout: 65_000 });
  }

  /** The answer's body, parsed. */
  async call<T>(method: string, path: string, creds: Credentials, body?: unknown): Promise<T> {
    return JSON.parse(await this.send(method, path, creds, body)) as T;
  }

  /**
   * Sends the call and reads its answer, but leaves a 200's body unparsed (the lifecycle needs only
   * claimWork's): a generator on the same 2 cores as the service takes what it spends from them.
   */
  async send(method: string, path: string, creds: Credentials, body?: unknown): Promise<string> {
    const fullPath = `/api/queue/v1${path}`;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {
      authorization: hawkHeader(method, this.host, this.port, fullPath, creds),
      accept: 'application/json',
    };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const res = await this.pool.request({ method: method as 'GET', path: fullPath, headers, body: payload ?? null });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new HttpError(res.statusCode, text, `${method} ${path}`);
    return text;
  }

  /** Ends the connections, open long-polls included. */
  close(): void {
    void this.pool.destroy();
  }
}
