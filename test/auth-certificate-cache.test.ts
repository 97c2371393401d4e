// The remembered HMACs of certificates (auth/certificate.ts): what the queue issued, or once found
// valid, is checked again on every request without its HMACs being recomputed — and a remembered
// certificate is still refused whenever a full check would refuse it: expired, a different
// signature, another issuer key, another Hawk id, another issuer's scopes. Made-up certificates
// are not remembered, and the memory is bounded.
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import * as hawk from 'hawk';
import { ApiError } from '../services/queue/src/http/errors.js';
import {
  Authenticator,
  CERTIFICATE_SKEW_MS,
  CertificateHmacs,
  certificateHmacs,
  certificateSignature,
  createTemporaryCredentials,
  verifyCertificate,
  type ClientRecord,
  type IssuerInfo,
} from '../services/queue/src/auth/index.js';

const root = { clientId: 'root', accessToken: 'root-token-for-the-cache-test-0123456789' };
const issuers: Record<string, IssuerInfo> = { root: { accessToken: root.accessToken, scopes: ['*'] } };
const lookup = async (id: string) => issuers[id];

type Cert = { version: 1; scopes: string[]; start: number; expiry: number; seed: string; signature: string; issuer?: string };

function issue(opts: { scopes?: string[]; expiryMs?: number; clientId?: string } = {}) {
  const creds = createTemporaryCredentials({
    issuer: root,
    scopes: opts.scopes ?? ['queue:resolve-task:abc/0'],
    start: new Date(Date.now() - 60_000),
    expiry: new Date(Date.now() + (opts.expiryMs ?? 3600_000)),
    ...(opts.clientId ? { clientId: opts.clientId } : {}),
  });
  return { creds, cert: JSON.parse(creds.certificate) as Cert };
}

async function refused(p: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ApiError, `expected an ApiError, got ${String(e)}`);
    assert.equal(e.code, 'AuthenticationFailed');
    assert.match(e.message, message);
    return true;
  });
}

describe('remembered certificate HMACs', () => {
  beforeEach(() => certificateHmacs.clear());

  test('credentials issued here are remembered, and verify to the same key without adding entries', async () => {
    const { creds } = issue();
    assert.equal(certificateHmacs.size, 1);
    const v = await verifyCertificate(creds.certificate, 'root', lookup);
    assert.equal(v.accessToken, creds.accessToken);
    assert.deepEqual(v.scopes, ['queue:resolve-task:abc/0']);
    assert.equal(certificateHmacs.size, 1);
  });

  test('a remembered certificate is refused once it has expired', async () => {
    const { creds, cert } = issue({ expiryMs: 60_000 });
    assert.ok((await verifyCertificate(creds.certificate, 'root', lookup)).accessToken);
    const later = new Date(cert.expiry + CERTIFICATE_SKEW_MS + 1);
    await refused(verifyCertificate(creds.certificate, 'root', lookup, later), /expired/);
    assert.equal(certificateHmacs.size, 1, 'still remembered: only the HMACs are, never the verdict');
  });

  test('the same fields with a different signature are refused', async () => {
    const { cert } = issue();
    const forged = { ...cert, signature: certificateSignature('some-other-key', cert) };
    await refused(verifyCertificate(forged, 'root', lookup), /signature is not valid/);
    const flipped = { ...cert, signature: (cert.signature[0] === 'A' ? 'B' : 'A') + cert.signature.slice(1) };
    await refused(verifyCertificate(flipped, 'root', lookup), /signature is not valid/);
    await refused(verifyCertificate({ ...cert, signature: '' }, 'root', lookup), /signature is not valid/);
  });

  test('a changed field under a remembered signature is refused', async () => {
    const { cert } = issue();
    await refused(verifyCertificate({ ...cert, scopes: ['*'] }, 'root', lookup), /signature is not valid/);
    await refused(verifyCertificate({ ...cert, expiry: cert.expiry + 1 }, 'root', lookup), /signature is not valid/);
    await refused(verifyCertificate({ ...cert, seed: cert.seed.slice(1) + 'A' }, 'root', lookup), /signature is not valid/);
  });

  test("a rotated issuer accessToken refuses certificates remembered under the old one", async () => {
    const { creds } = issue();
    const rotated = async (id: string) => (id === 'root' ? { accessToken: 'the-new-root-token', scopes: ['*'] } : undefined);
    await refused(verifyCertificate(creds.certificate, 'root', rotated), /signature is not valid/);
  });

  test('an issuer that lost the scopes, or is gone, refuses a remembered certificate', async () => {
    const { creds } = issue({ scopes: ['queue:create-task:*'] });
    const narrowed = async (id: string) => (id === 'root' ? { accessToken: root.accessToken, scopes: ['queue:get-task:*'] } : undefined);
    await refused(verifyCertificate(creds.certificate, 'root', narrowed), /does not hold/);
    await refused(verifyCertificate(creds.certificate, 'root', async () => undefined), /unknown, disabled or expired/);
  });

  test('named credentials are refused under another Hawk id', async () => {
    const { creds, cert } = issue({ clientId: 'task-client/abc/0' });
    assert.equal((await verifyCertificate(cert, 'task-client/abc/0', lookup)).accessToken, creds.accessToken);
    await refused(verifyCertificate(cert, 'task-client/abc/1', lookup), /signature is not valid/);
    await refused(verifyCertificate(cert, 'root', lookup), /must differ/);
  });

  test('made-up certificates are not remembered; a valid one seen first is', async () => {
    const { cert } = issue();
    certificateHmacs.clear();
    await refused(verifyCertificate({ ...cert, signature: 'x'.repeat(44) }, 'root', lookup), /signature/);
    assert.equal(certificateHmacs.size, 0);
    await verifyCertificate(cert, 'root', lookup);
    assert.equal(certificateHmacs.size, 1);
  });

  test('the memory is bounded: the oldest entries go first', () => {
    const small = new CertificateHmacs(3);
    const entries = ['a', 'b', 'c', 'd'].map((seed) => small.get('key', `lines ${seed}`, seed));
    for (const e of entries) small.remember(e);
    assert.equal(small.size, 3);
    assert.equal(small.get('key', 'lines a', 'a').known, false);
    assert.equal(small.get('key', 'lines d', 'd').known, true);
    // the HMACs are the same whether remembered or not
    assert.deepEqual(
      { ...small.get('key', 'lines d', 'd'), known: false },
      { ...new CertificateHmacs(3).get('key', 'lines d', 'd') },
    );
  });

  test('over Hawk: a remembered certificate authenticates, and its Hawk MAC is still checked', async () => {
    const clients: Record<string, ClientRecord> = { root: { accessToken: root.accessToken, scopes: ['*'] } };
    const auth = new Authenticator({ lookupClient: async (id) => clients[id], anonymousScopes: [] });
    const { creds, cert } = issue();
    const request = (key: string) => {
      const url = 'http://queue.example:8080/api/queue/v1/task/abc/runs/0/completed';
      const ext = Buffer.from(JSON.stringify({ certificate: cert })).toString('base64');
      const { header } = hawk.client.header(url, 'POST', { credentials: { id: creds.clientId, key, algorithm: 'sha256' }, ext });
      return auth.authenticate({ method: 'POST', url: new URL(url).pathname, host: 'queue.example', port: 8080, authorization: header });
    };
    const ok = await request(creds.accessToken);
    assert.deepEqual(ok.scopes, ['queue:resolve-task:abc/0']);
    await refused(request(root.accessToken), /Bad mac/);
    await refused(request('not-the-temporary-key'), /Bad mac/);
  });
});
