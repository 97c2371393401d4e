// Taskcluster temporary credentials ("certificates"), issuing and verifying.
//
// A certificate is signed by an issuing client's accessToken and travels in Hawk's `ext`. The
// temporary accessToken is derived from the issuer's accessToken and the certificate's seed, so
// the server can recompute it and check the request MAC with it.
import { createHmac, timingSafeEqual } from 'node:crypto';
import * as slugid from 'slugid';
import { ApiError } from '../http/errors.js';
import { AgeOrderedMap } from './age-ordered-map.js';
import { satisfies, validScope } from './scopes.js';

export interface Certificate {
  version: 1;
  scopes: string[];
  /** ms since epoch */
  start: number;
  /** ms since epoch */
  expiry: number;
  /** 44 characters (two slugids) */
  seed: string;
  /** base64 HMAC-SHA256, see certificateSignature */
  signature: string;
  /** present only for named temporary credentials */
  issuer?: string;
}

export interface TemporaryCredentials {
  clientId: string;
  accessToken: string;
  /** the certificate, JSON-encoded (as taskcluster-client produces it) */
  certificate: string;
}

export interface CreateTemporaryCredentialsOptions {
  issuer: { clientId: string; accessToken: string };
  scopes: string[];
  start: Date;
  expiry: Date;
  /** name for named temporary credentials; must differ from the issuer */
  clientId?: string;
}

/** What verifyCertificate needs to know about an issuing client. */
export interface IssuerInfo {
  accessToken: string;
  scopes: string[];
}

/**
 * Look up a client that may issue certificates. Must return undefined for unknown, disabled or
 * expired clients.
 */
export type IssuerLookup = (clientId: string) => Promise<IssuerInfo | undefined>;

export interface VerifiedCertificate {
  /** the temporary accessToken: the key the request's Hawk MAC must be checked with */
  accessToken: string;
  /** the certificate's scopes: the scopes of the request */
  scopes: string[];
  /** the clientId whose accessToken signed the certificate */
  issuer: string;
  expiry: Date;
}

export const MAX_CERTIFICATE_SPAN_MS = 31 * 24 * 60 * 60 * 1000;
/** Clock drift allowed on a certificate's start and expiry. */
export const CERTIFICATE_SKEW_MS = 5 * 60 * 1000;

interface CertificateHmacsEntry {
  signature: string;
  accessToken: string;
}

/**
 * The two HMACs of valid certificates, remembered: the queue checks the certificates it handed
 * out (claimWork) on every call a worker makes with them, and an HMAC costs more than the rest of
 * the check. Both are pure functions of (issuer accessToken, signed lines), which is exactly the
 * key, so a remembered answer is the answer; everything else (times, issuer, scopes, the presented
 * signature) is checked on every request. Only certificates issued here or found valid are
 * remembered, so made-up ones cannot push out real ones. Bounded: the oldest go first.
 */
export class CertificateHmacs {
  private readonly entries = new AgeOrderedMap<CertificateHmacsEntry>();

  constructor(private readonly maxEntries: number) {}

  /** The HMACs, remembered or computed; `remember` them once the certificate proved valid. */
  get(issuerAccessToken: string, canonical: string, seed: string): CertificateHmacsEntry & { key: string; known: boolean } {
    const key = `${issuerAccessToken}\n${canonical}`;
    const known = this.entries.get(key);
    if (known) return { ...known, key, known: true };
    return {
      signature: signCanonical(issuerAccessToken, canonical),
      accessToken: temporaryAccessToken(issuerAccessToken, seed),
      key,
      known: false,
    };
  }

  remember({ key, signature, accessToken }: { key: string; signature: string; accessToken: string }): void {
    while (this.entries.size > 0 && this.entries.size >= this.maxEntries) this.entries.deleteOldest();
    this.entries.set(key, { signature, accessToken });
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}

/** Some 20 s of claims at 1,000/s; an entry is about half a KiB. */
export const certificateHmacs = new CertificateHmacs(20_000);

/** The lines a certificate's signature covers. */
function canonicalCertificate(
  cert: { seed: string; start: number; expiry: number; scopes: readonly string[] },
  named?: { clientId: string; issuer: string },
): string {
  const lines = ['version:1'];
  if (named) lines.push(`clientId:${named.clientId}`, `issuer:${named.issuer}`);
  lines.push(`seed:${cert.seed}`, `start:${cert.start}`, `expiry:${cert.expiry}`, 'scopes:', ...cert.scopes);
  return lines.join('\n');
}

/** base64 HMAC-SHA256 over the certificate's canonical lines, keyed by the issuer's accessToken. */
export function certificateSignature(
  issuerAccessToken: string,
  cert: { seed: string; start: number; expiry: number; scopes: readonly string[] },
  named?: { clientId: string; issuer: string },
): string {
  return signCanonical(issuerAccessToken, canonicalCertificate(cert, named));
}

function signCanonical(issuerAccessToken: string, canonical: string): string {
  return createHmac('sha256', issuerAccessToken).update(canonical).digest('base64');
}

/** Unpadded base64url HMAC-SHA256(issuer accessToken, seed). */
export function temporaryAccessToken(issuerAccessToken: string, seed: string): string {
  return createHmac('sha256', issuerAccessToken).update(seed).digest('base64url');
}

/** Issue temporary credentials exactly as Taskcluster (and taskcluster-client) do. */
export function createTemporaryCredentials(opts: CreateTemporaryCredentialsOptions): TemporaryCredentials {
  const { issuer, scopes, start, expiry, clientId } = opts;
  if (!issuer.clientId || !issuer.accessToken) throw new Error('createTemporaryCredentials: issuer credentials required');
  if (!(start instanceof Date) || !(expiry instanceof Date) || Number.isNaN(start.getTime()) || Number.isNaN(expiry.getTime())) {
    throw new Error('createTemporaryCredentials: start and expiry must be valid Dates');
  }
  if (expiry.getTime() - start.getTime() > MAX_CERTIFICATE_SPAN_MS) {
    throw new Error('createTemporaryCredentials: credentials cannot span more than 31 days');
  }
  if (!scopes.every((s) => validScope(s))) throw new Error('createTemporaryCredentials: invalid scope');
  const named = clientId !== undefined && clientId !== '';
  if (named && clientId === issuer.clientId) {
    throw new Error('createTemporaryCredentials: the credential name must differ from the issuer');
  }
  const cert: Certificate = {
    version: 1,
    scopes: [...scopes],
    start: start.getTime(),
    expiry: expiry.getTime(),
    seed: slugid.v4() + slugid.v4(),
    signature: '',
  };
  if (named) cert.issuer = issuer.clientId;
  const canonical = canonicalCertificate(cert, named ? { clientId, issuer: issuer.clientId } : undefined);
  // remembered here, so the worker's first call with these credentials skips both HMACs
  const hmacs = certificateHmacs.get(issuer.accessToken, canonical, cert.seed);
  certificateHmacs.remember(hmacs);
  cert.signature = hmacs.signature;
  return {
    clientId: named ? clientId : issuer.clientId,
    accessToken: hmacs.accessToken,
    certificate: JSON.stringify(cert),
  };
}

function fail(reason: string): never {
  throw new ApiError('AuthenticationFailed', `Invalid temporary credentials: ${reason}`);
}

function safeEqual(a: string, b: string): boolean {
  const ba = Buffer.from(a);
  const bb = Buffer.from(b);
  // Lengths of base64 HMAC-SHA256 digests are public knowledge; only contents must be compared
  // in constant time.
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}

/**
 * Verify a certificate presented (in Hawk `ext`) by a request whose Hawk id is `clientIdUsed`.
 * Accepts the certificate as an object or as its JSON string. Throws
 * ApiError('AuthenticationFailed') on any problem. The caller must still check the request's
 * Hawk MAC with the returned `accessToken`.
 */
export async function verifyCertificate(
  cert: unknown,
  clientIdUsed: string,
  lookupIssuer: IssuerLookup,
  now: Date = new Date(),
): Promise<VerifiedCertificate> {
  if (typeof cert === 'string') {
    try {
      cert = JSON.parse(cert) as unknown;
    } catch {
      fail('ext.certificate is a string but not valid JSON');
    }
  }
  if (typeof cert !== 'object' || cert === null || Array.isArray(cert)) fail('ext.certificate must be a JSON object');
  const c = cert as Record<string, unknown>;
  if (c['version'] !== 1) fail('ext.certificate.version must be 1');
  const { seed, start, expiry, scopes, signature, issuer } = c;
  if (typeof seed !== 'string' || seed.length !== 44) fail('ext.certificate.seed must be a string of 44 characters');
  if (typeof start !== 'number' || !Number.isSafeInteger(start)) fail('ext.certificate.start must be an integer (ms)');
  if (typeof expiry !== 'number' || !Number.isSafeInteger(expiry)) fail('ext.certificate.expiry must be an integer (ms)');
  if (typeof signature !== 'string') fail('ext.certificate.signature must be a string');
  if (!Array.isArray(scopes) || !scopes.every((s) => validScope(s))) {
    fail('ext.certificate.scopes must be an array of valid scopes');
  }
  const certScopes = scopes as string[];

  const nowMs = now.getTime();
  if (start > nowMs + CERTIFICATE_SKEW_MS) fail('ext.certificate.start is in the future');
  if (expiry < nowMs - CERTIFICATE_SKEW_MS) fail('ext.certificate.expiry is in the past: the credentials have expired');
  if (expiry - start > MAX_CERTIFICATE_SPAN_MS) fail('ext.certificate cannot span more than 31 days');

  let issuerId = clientIdUsed;
  if (issuer !== undefined) {
    if (typeof issuer !== 'string' || issuer === '') fail('ext.certificate.issuer must be a non-empty string');
    if (issuer === clientIdUsed) fail('ext.certificate.issuer must differ from the supplied clientId');
    issuerId = issuer;
  }

  const issuerInfo = await lookupIssuer(issuerId);
  if (!issuerInfo) fail(`issuing client "${issuerId}" is unknown, disabled or expired`);

  const canonical = canonicalCertificate(
    { seed, start, expiry, scopes: certScopes },
    issuer !== undefined ? { clientId: clientIdUsed, issuer: issuerId } : undefined,
  );
  const hmacs = certificateHmacs.get(issuerInfo.accessToken, canonical, seed);
  if (!safeEqual(hmacs.signature, signature)) fail('ext.certificate.signature is not valid');
  if (!hmacs.known) certificateHmacs.remember(hmacs);

  if (!satisfies(issuerInfo.scopes, { AllOf: certScopes })) {
    fail(`issuing client "${issuerId}" does not hold all of the certificate's scopes`);
  }
  if (issuer !== undefined && !satisfies(issuerInfo.scopes, `auth:create-client:${clientIdUsed}`)) {
    fail(`issuing client "${issuerId}" lacks the scope auth:create-client:${clientIdUsed} needed to name credentials "${clientIdUsed}"`);
  }

  return {
    accessToken: hmacs.accessToken,
    scopes: [...certScopes],
    issuer: issuerId,
    expiry: new Date(expiry),
  };
}
