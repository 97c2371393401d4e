// Signed, expiring URLs for moving artifact bytes: the putUrl a worker uploads to and the URL
// getArtifact redirects to. The token carries what it grants and an HMAC-SHA256 over it, keyed from
// the root access token, so every replica that shares ROOT_ACCESS_TOKEN accepts the URLs of the
// others and nothing has to be stored per URL.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Ctx } from '../context.js';
import { ApiError } from '../http/errors.js';
import { apiPrefix } from '../http/server.js';

export type Grant =
  | { kind: 'put'; taskId: string; runId: number; name: string; expires: Date }
  | { kind: 'get'; taskId: string; runId: number; name: string; uploadId: string; expires: Date };

export const uploadPath = `${apiPrefix}/artifact-uploads`;
export const downloadPath = `${apiPrefix}/artifact-downloads`;

/** How long a putUrl is good for (the reference's S3 putUrl lasts 45 minutes). */
export const putUrlLifetimeMs = 45 * 60 * 1000;
/** How long a download URL is good for (the reference signs S3 GETs for 30 minutes). */
export const getUrlLifetimeMs = 30 * 60 * 1000;

const keys = new WeakMap<Ctx, Buffer>();

function keyOf(ctx: Ctx): Buffer {
  let key = keys.get(ctx);
  if (!key) {
    // a key of its own, so a token can never double as anything else signed with the root token
    key = createHmac('sha256', ctx.issuer.accessToken).update('conveyor artifact URLs v1').digest();
    keys.set(ctx, key);
  }
  return key;
}

function payloadOf(g: Grant): unknown[] {
  return g.kind === 'put'
    ? ['put', g.taskId, g.runId, g.name, g.expires.getTime()]
    : ['get', g.taskId, g.runId, g.name, g.uploadId, g.expires.getTime()];
}

export function signToken(ctx: Ctx, g: Grant): string {
  const payload = Buffer.from(JSON.stringify(payloadOf(g))).toString('base64url');
  const mac = createHmac('sha256', keyOf(ctx)).update(payload).digest('base64url');
  return `${payload}.${mac}`;
}

export function putUrl(ctx: Ctx, g: Omit<Extract<Grant, { kind: 'put' }>, 'kind'>): string {
  return `${ctx.config.rootUrl}${uploadPath}/${signToken(ctx, { kind: 'put', ...g })}`;
}

export function getUrl(ctx: Ctx, g: Omit<Extract<Grant, { kind: 'get' }>, 'kind'>): string {
  return `${ctx.config.rootUrl}${downloadPath}/${signToken(ctx, { kind: 'get', ...g })}`;
}

function badUrl(what: string): ApiError {
  return new ApiError(
    'AuthenticationFailed',
    `This ${what} URL is not valid: its signature does not match (was it altered or truncated?). ` +
      (what === 'upload' ? 'Call createArtifact again for a fresh putUrl.' : 'Call getArtifact again for a fresh URL.'),
  );
}

/** Verifies a token and returns its grant; a bad signature is a 401, an expired URL a 410. */
export function verifyToken<K extends Grant['kind']>(ctx: Ctx, token: string, kind: K): Extract<Grant, { kind: K }> {
  const what = kind === 'put' ? 'upload' : 'download';
  const dot = token.indexOf('.');
  if (dot < 0) throw badUrl(what);
  const payload = token.slice(0, dot);
  const mac = Buffer.from(token.slice(dot + 1), 'base64url');
  const expected = createHmac('sha256', keyOf(ctx)).update(payload).digest();
  if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) throw badUrl(what);
  const p = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown[];
  if (p[0] !== kind) throw badUrl(what);
  const grant = (
    kind === 'put'
      ? { kind, taskId: p[1], runId: p[2], name: p[3], expires: new Date(p[4] as number) }
      : { kind, taskId: p[1], runId: p[2], name: p[3], uploadId: p[4], expires: new Date(p[5] as number) }
  ) as Extract<Grant, { kind: K }>;
  if (grant.expires.getTime() <= ctx.clock.now().getTime()) {
    throw new ApiError(
      'ResourceExpired',
      `This ${what} URL expired at ${grant.expires.toISOString()}. ` +
        (kind === 'put' ? 'Call createArtifact again for a fresh putUrl.' : 'Call getArtifact again for a fresh URL.'),
    );
  }
  return grant;
}
