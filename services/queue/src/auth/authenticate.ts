// Hawk authentication of API requests (Authorization header or `bewit` query parameter), with
// Taskcluster's `ext` extensions: temporary credentials (certificate) and authorizedScopes.
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import * as hawk from 'hawk';
import { ApiError } from '../http/errors.js';
import { AgeOrderedMap } from './age-ordered-map.js';
import { verifyCertificate, type IssuerInfo } from './certificate.js';
import { satisfies, validScope } from './scopes.js';

export interface ClientRecord {
  accessToken: string;
  scopes: string[];
  expires?: Date;
  disabled?: boolean;
}

/** Resolve a clientId (including the root client) to its record, or undefined if unknown. */
export type ClientLookup = (clientId: string) => Promise<ClientRecord | undefined>;

export interface AuthenticatorOptions {
  lookupClient: ClientLookup;
  /** scopes every caller holds, authenticated or not */
  anonymousScopes: string[];
  /** permitted clock skew of the Hawk `ts`, in seconds, either way (default 900) */
  maxSkewSec?: number;
  /** maximum number of remembered (id, nonce, ts) triples (default 50 000) */
  nonceCacheSize?: number;
}

export interface AuthRequest {
  method: string;
  /** path + query exactly as received (percent-encoding untouched) */
  url: string;
  /** host as the client addressed it (Host header, or x-forwarded-host behind a proxy), without port */
  host: string;
  /** port as the client addressed it (x-forwarded-port behind a proxy) */
  port: number;
  authorization?: string | undefined;
}

export interface AuthResult {
  /** Hawk id of the caller (for named temporary credentials, the name); undefined when anonymous */
  clientId?: string;
  /** the caller's scopes (or its authorizedScopes) plus the anonymous scopes, without duplicates */
  scopes: string[];
  /** whether the request carried credentials at all (an Authorization header or a bewit) */
  hasAuthHeader: boolean;
}

interface Ext {
  certificate?: unknown;
  authorizedScopes?: unknown;
}

interface ResolvedCredentials extends hawk.server.Credentials {
  scopes: string[];
}

// Hawk refuses Authorization headers over 4 KiB by default, but temporary credentials carry their
// certificate, with every scope of the task, in the header's `ext`: a task with some 40 scopes
// would hand its worker credentials that always fail. The HTTP server caps header size instead
// (256 KiB, http/server.ts), and createTask keeps a task's scopes within it.
hawk.utils.limits.maxMatchLength = 256 * 1024;

interface HeaderAttributes {
  id?: string;
  ts?: string;
  nonce?: string;
  mac?: string;
  hash?: string;
  ext?: string;
  app?: string;
  dlg?: string;
}

/** Constant-time comparison of two MACs (a different length is simply a mismatch). */
function sameMac(a: string, b: string): boolean {
  const ba = Buffer.from(a);
  const bb = Buffer.from(b);
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}

function authFailed(message: string): ApiError {
  return new ApiError('AuthenticationFailed', message);
}

/**
 * Remembers (id, nonce, ts) triples of accepted Hawk headers for as long as their `ts` would be
 * accepted, so an identical header cannot be replayed. Bounded: when full, the oldest entries are
 * dropped first (a replay of a dropped entry would then pass; size it for the request rate times
 * twice the skew window).
 */
export class NonceCache {
  /** key → when it expires */
  private readonly entries = new AgeOrderedMap<number>();

  constructor(
    private readonly maxEntries: number,
    private readonly ttlMs: number,
  ) {}

  /** Returns false if the triple was already seen (a replay), else records it and returns true. */
  checkAndAdd(id: string, nonce: string, ts: string, nowMs: number): boolean {
    this.prune(nowMs);
    const key = `${id}\u0000${nonce}\u0000${ts}`;
    const known = this.entries.get(key);
    if (known !== undefined && known > nowMs) return false;
    const tsMs = Number(ts) * 1000;
    this.entries.set(key, Math.max(Number.isFinite(tsMs) ? tsMs + this.ttlMs : 0, nowMs + 1000));
    while (this.entries.size > this.maxEntries) this.entries.deleteOldest();
    return true;
  }

  get size(): number {
    return this.entries.size;
  }

  // Insertion order approximates expiry order (accepted timestamps are all within the skew of
  // the time they were seen), so expired entries are swept from the front.
  private prune(nowMs: number): void {
    for (let key = this.entries.oldestKey(); key !== undefined; key = this.entries.oldestKey()) {
      if (this.entries.get(key)! > nowMs) break;
      this.entries.deleteOldest();
    }
  }
}

function parseExt(ext: string | undefined): Ext {
  if (ext === undefined || ext === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(ext, 'base64').toString('utf8'));
  } catch {
    throw authFailed('Failed to parse ext: it must be base64-encoded JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw authFailed('Failed to parse ext: it must encode a JSON object');
  }
  return parsed as Ext;
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}

/** Find the `bewit` query parameter of a path+query, if any. */
function bewitParam(url: string): string | undefined {
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  const value = new URLSearchParams(url.slice(q + 1)).get('bewit');
  return value ?? undefined;
}

// Hawk's own messages, translated into something a caller can act on.
function hawkFailure(err: unknown, skewSec: number, clientId: string | undefined): ApiError {
  const msg = err instanceof Error ? err.message : String(err);
  const who = clientId !== undefined ? ` for clientId "${clientId}"` : '';
  switch (msg) {
    case 'Bad mac':
      return authFailed(
        `Bad mac: the Hawk signature does not match${who}; the accessToken is wrong, or the method, path, query, host or port differs from what was signed`,
      );
    case 'Stale timestamp':
      return authFailed(`Stale timestamp: the request's Hawk ts is more than ${skewSec} s away from server time; check the client's clock`);
    case 'Access expired':
      return authFailed('The signed URL (bewit) has expired');
    case 'Invalid method':
      return authFailed('A signed URL (bewit) may only be used with GET or HEAD');
    case 'Empty bewit':
      return authFailed('The bewit query parameter is empty');
    default:
      return authFailed(`Hawk authentication failed: ${msg || 'invalid Authorization header'}`);
  }
}

export class Authenticator {
  private readonly lookupClient: ClientLookup;
  private readonly anonymousScopes: string[];
  private readonly skewSec: number;
  private readonly nonces: NonceCache;

  constructor(opts: AuthenticatorOptions) {
    this.lookupClient = opts.lookupClient;
    this.anonymousScopes = [...opts.anonymousScopes];
    this.skewSec = opts.maxSkewSec ?? 900;
    this.nonces = new NonceCache(opts.nonceCacheSize ?? 50_000, this.skewSec * 1000);
  }

  async authenticate(req: AuthRequest): Promise<AuthResult> {
    const authorization = req.authorization !== undefined && req.authorization !== '' ? req.authorization : undefined;
    const bewit = bewitParam(req.url);
    if (authorization === undefined && bewit === undefined) {
      return { clientId: undefined, scopes: [...this.anonymousScopes], hasAuthHeader: false };
    }
    if (authorization !== undefined && bewit !== undefined) {
      throw authFailed('A request may be authenticated by an Authorization header or by a bewit, not both');
    }
    return authorization !== undefined ? this.viaHeader(req, authorization) : this.viaBewit(req, bewit as string);
  }

  private async viaHeader(req: AuthRequest, authorization: string): Promise<AuthResult> {
    let attributes: HeaderAttributes;
    try {
      attributes = hawk.utils.parseAuthorizationHeader(authorization) as HeaderAttributes;
    } catch (err) {
      const msg = err instanceof Error && err.message ? `: ${err.message}` : '';
      throw authFailed(`The Authorization header is not a valid Hawk header${msg}`);
    }
    const id = attributes.id;
    if (!id || !attributes.ts || !attributes.nonce) {
      throw authFailed('The Hawk Authorization header must carry id, ts, nonce and mac');
    }
    const ext = parseExt(attributes.ext);

    // Hawk's header check (hawk.server.authenticate, in its order: attributes, credentials, MAC,
    // timestamp) on the header parsed above rather than parsing it a second time.
    // No `payload` check: taskcluster-client never sends a payload hash, so none is required.
    // If a client does send `hash`, it is covered by the MAC but not compared with the body
    // (the body is not available here); the HTTP layer may call
    // hawk.server.authenticatePayload if it ever wants that check.
    const now = hawk.utils.now(0);
    if (!attributes.mac) throw hawkFailure(new Error('Missing attributes'), this.skewSec, id);
    const credentials = await this.resolveCredentials(id, ext);
    if (!credentials.key) throw hawkFailure(new Error('Invalid credentials'), this.skewSec, id);
    const mac = hawk.crypto.calculateMac('header', { id, key: credentials.key, algorithm: credentials.algorithm }, {
      method: req.method,
      host: req.host,
      port: req.port,
      resource: req.url,
      ts: attributes.ts,
      nonce: attributes.nonce,
      hash: attributes.hash,
      ext: attributes.ext,
      app: attributes.app,
      dlg: attributes.dlg,
    } as hawk.crypto.Artifacts);
    if (!sameMac(mac, attributes.mac)) throw hawkFailure(new Error('Bad mac'), this.skewSec, id);
    // `|| 60`: hawk's default for a skew of 0; a ts that is not a number is not stale to hawk
    if (Math.abs(Number(attributes.ts) * 1000 - now) > (this.skewSec || 60) * 1000) {
      throw hawkFailure(new Error('Stale timestamp'), this.skewSec, id);
    }
    // Only requests with a valid MAC and a fresh ts reach the nonce cache.
    if (!this.nonces.checkAndAdd(id, attributes.nonce, attributes.ts, Date.now())) {
      throw authFailed('Replayed request: this Hawk nonce and timestamp were already used; sign every request afresh');
    }
    return this.finish(id, credentials.scopes, ext);
  }

  private async viaBewit(req: AuthRequest, bewit: string): Promise<AuthResult> {
    // The bewit is base64url("id\exp\mac\ext"); read id and ext ahead of hawk to pick the key.
    const parts = Buffer.from(bewit, 'base64url').toString('utf8').split('\\');
    if (parts.length !== 4 || !parts[0]) throw authFailed('The bewit query parameter is malformed');
    const id = parts[0];
    const ext = parseExt(parts[3]);

    const { resolve, failure } = this.credentialsFunc(ext);
    let result: { credentials: hawk.server.Credentials };
    try {
      // hawk strips the bewit parameter from the URL before computing the MAC.
      result = await hawk.server.authenticateBewit(
        { method: req.method, url: req.url, host: req.host, port: req.port } as unknown as IncomingMessage,
        resolve,
        {},
      );
    } catch (err) {
      throw failure() ?? hawkFailure(err, this.skewSec, id);
    }
    return this.finish(id, (result.credentials as ResolvedCredentials).scopes, ext);
  }

  private finish(clientId: string, credentialScopes: string[], ext: Ext): AuthResult {
    let scopes = credentialScopes;
    if (ext.authorizedScopes !== undefined) {
      const requested = ext.authorizedScopes;
      if (!Array.isArray(requested) || !requested.every((s) => validScope(s))) {
        throw authFailed('ext.authorizedScopes must be an array of valid scopes');
      }
      // Every caller holds the anonymous scopes anyway, so asking for them is not a widening.
      if (!satisfies(union(credentialScopes, this.anonymousScopes), { AllOf: requested as string[] })) {
        throw authFailed(`ext.authorizedScopes oversteps the scopes of clientId "${clientId}"`);
      }
      scopes = requested as string[];
    }
    return { clientId, scopes: union(scopes, this.anonymousScopes), hasAuthHeader: true };
  }

  /** The key a request's MAC is checked with: a certificate's temporary key, or the client's. */
  private async resolveCredentials(id: string, ext: Ext): Promise<ResolvedCredentials> {
    if (ext.certificate !== undefined && ext.certificate !== null) {
      const cert = await verifyCertificate(ext.certificate, id, (issuer) => this.issuer(issuer));
      return { key: cert.accessToken, algorithm: 'sha256', user: id, scopes: cert.scopes };
    }
    const client = await this.activeClient(id);
    return { key: client.accessToken, algorithm: 'sha256', user: id, scopes: client.scopes };
  }

  /**
   * The credentials function handed to hawk (bewits). Errors thrown inside it would be re-wrapped
   * by hawk, so the first one is kept aside and rethrown by the caller as is (ApiError → 401;
   * anything else, e.g. a database failure, propagates unchanged).
   */
  private credentialsFunc(ext: Ext): {
    resolve: (id: string) => Promise<ResolvedCredentials>;
    failure: () => unknown;
  } {
    let captured: unknown;
    const resolve = async (id: string): Promise<ResolvedCredentials> => {
      try {
        return await this.resolveCredentials(id, ext);
      } catch (err) {
        captured ??= err;
        throw err;
      }
    };
    return { resolve, failure: () => captured };
  }

  private async activeClient(clientId: string): Promise<ClientRecord> {
    const client = await this.lookupClient(clientId);
    if (!client) throw authFailed(`Unknown clientId "${clientId}"`);
    if (client.disabled) throw authFailed(`clientId "${clientId}" is disabled`);
    if (client.expires !== undefined && client.expires.getTime() <= Date.now()) {
      throw authFailed(`clientId "${clientId}" expired at ${client.expires.toISOString()}`);
    }
    return client;
  }

  // Issuers of certificates hold the anonymous scopes like every client.
  private async issuer(clientId: string): Promise<IssuerInfo | undefined> {
    const client = await this.lookupClient(clientId);
    if (!client || client.disabled || (client.expires !== undefined && client.expires.getTime() <= Date.now())) {
      return undefined;
    }
    return { accessToken: client.accessToken, scopes: union(client.scopes, this.anonymousScopes) };
  }
}
