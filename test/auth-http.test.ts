// Authentication over HTTP against the real service: anonymous callers get 403, every kind of
// bad credential 401 with www-authenticate, certificates, authorizedScopes, replay and clock-skew
// protection, bewits for GET, and clients stored in PostgreSQL (their tokens encrypted at rest:
// only ciphertext in the row, legacy plain-text rows encrypted at start, a token that does not
// decrypt is an unknown client — 401, never 500 — and a ciphertext is bound to its clientId).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { startQueue } from '../services/queue/src/app.js';
import { clientCommand } from '../services/queue/src/auth/clients-cli.js';
import { clientLookup, encryptPlainTokens, storeClient } from '../services/queue/src/auth/clients.js';
import { decryptToken } from '../services/queue/src/auth/token-cipher.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef } from './harness/tasks.js';
import { assertError, hawkHeader, rawRequest, rejectsWith, type RawResponse } from './harness/http.js';

describe('authentication over HTTP', () => {
  let q: TestQueue;
  let taskId: string;
  before(async () => {
    q = await startTestQueue();
    taskId = slugid();
    await q.queue().createTask(taskId, taskDef());
  });
  after(async () => {
    await q?.stop();
  });

  const statusPath = () => `/api/queue/v1/task/${taskId}/status`;
  const get = (opts: Parameters<typeof rawRequest>[1] extends infer R ? Partial<R> : never = {}) =>
    rawRequest(q.rootUrl, { method: 'GET', path: statusPath(), ...opts });
  function assert401(res: RawResponse, message?: RegExp) {
    assertError(res, 401, 'AuthenticationFailed');
    assert.match(res.headers.get('www-authenticate') ?? '', /^hawk/i);
    if (message) assert.match(res.body.message, message);
  }
  async function storedClient(clientId: string, scopes: string[]): Promise<{ clientId: string; accessToken: string }> {
    let out = '';
    assert.equal(await clientCommand(q.service.ctx.db, q.config.clientTokenKey!, ['create', clientId, ...scopes], (s) => (out += s)), 0);
    return JSON.parse(out);
  }

  it('answers a request without credentials with 403 InsufficientScopes, not 401', async () => {
    const res = await get();
    assertError(res, 403, 'InsufficientScopes');
    assert.match(res.body.message, /queue:status:/);
    const anon = new taskcluster.Queue({ rootUrl: q.rootUrl, retries: 0 });
    await rejectsWith(anon.status(taskId), 403, 'InsufficientScopes');
    // public endpoints need nothing
    assert.equal((await rawRequest(q.rootUrl, { method: 'GET', path: '/api/queue/v1/ping' })).status, 200);
  });

  it('accepts the root client', async () => {
    const res = await get({ credentials: q.credentials });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.status.taskId, taskId);
  });

  it('refuses a bad signature, an unknown client and a non-Hawk header with 401', async () => {
    assert401(await get({ credentials: { ...q.credentials, accessToken: 'wrong' } }), /Bad mac/);
    assert401(await get({ credentials: { clientId: 'nobody', accessToken: 'x' } }), /Unknown clientId/);
    assert401(await get({ headers: { authorization: 'Bearer abc' } }));
    assert401(await get({ headers: { authorization: 'Hawk id="root", ts="1", nonce="x"' } }));
    // a signature for another path does not carry over
    const header = hawkHeader(`${q.rootUrl}/api/queue/v1/task/${slugid()}/status`, 'GET', { credentials: q.credentials });
    assert401(await get({ headers: { authorization: header } }));
    // ext that is not base64 JSON
    const badExt = hawkHeader(`${q.rootUrl}${statusPath()}`, 'GET', { credentials: q.credentials }).replace(/mac=/, 'ext="!!", mac=');
    assert401(await get({ headers: { authorization: badExt } }));
    const client = q.queue({ credentials: { clientId: 'root', accessToken: 'nope' } });
    await rejectsWith(client.status(taskId), 401, 'AuthenticationFailed');
  });

  it('refuses a replayed request (same id, nonce and ts) with 401', async () => {
    const ts = Math.floor(Date.now() / 1000);
    const first = await get({ credentials: q.credentials, timestamp: ts, nonce: 'n0nce1' });
    assert.equal(first.status, 200, first.text);
    assert401(await get({ credentials: q.credentials, timestamp: ts, nonce: 'n0nce1' }), /Replayed/);
    // another nonce is fine
    assert.equal((await get({ credentials: q.credentials, timestamp: ts, nonce: 'n0nce2' })).status, 200);
  });

  it('refuses a timestamp more than 15 minutes off with 401, and accepts 14 minutes', async () => {
    const now = Math.floor(Date.now() / 1000);
    assert401(await get({ credentials: q.credentials, timestamp: now - 16 * 60 }), /Stale timestamp/);
    assert401(await get({ credentials: q.credentials, timestamp: now + 16 * 60 }), /Stale timestamp/);
    assert.equal((await get({ credentials: q.credentials, timestamp: now - 14 * 60 })).status, 200);
    assert.equal((await get({ credentials: q.credentials, timestamp: now + 14 * 60 })).status, 200);
  });

  describe('temporary credentials', () => {
    it('work with their own scopes only', async () => {
      const creds = taskcluster.createTemporaryCredentials({
        scopes: [`queue:status:${taskId}`], expiry: taskcluster.fromNow('1 hour'), credentials: q.credentials,
      });
      assert.equal((await q.queue({ credentials: creds }).status(taskId)).status.taskId, taskId);
      await rejectsWith(q.queue({ credentials: creds }).task(taskId), 403, 'InsufficientScopes');
    });

    it('are refused with 401 once expired, before they start, or signed with a wrong key', async () => {
      const expired = taskcluster.createTemporaryCredentials({
        scopes: ['queue:status:*'], start: taskcluster.fromNow('-2 hours'), expiry: taskcluster.fromNow('-1 hour'), credentials: q.credentials,
      });
      assert401(await get({ credentials: expired }), /expired/);
      const future = taskcluster.createTemporaryCredentials({
        scopes: ['queue:status:*'], start: taskcluster.fromNow('1 hour'), expiry: taskcluster.fromNow('2 hours'), credentials: q.credentials,
      });
      assert401(await get({ credentials: future }), /future/);
      const forged = taskcluster.createTemporaryCredentials({
        scopes: ['queue:status:*'], expiry: taskcluster.fromNow('1 hour'), credentials: { clientId: 'root', accessToken: 'not-the-token' },
      });
      assert401(await get({ credentials: forged }));
    });

    it('are refused with 401 when the issuer does not hold their scopes', async () => {
      const issuer = await storedClient('issuer-limited', ['queue:status:*']);
      const creds = taskcluster.createTemporaryCredentials({ scopes: ['queue:get-task:*'], expiry: taskcluster.fromNow('1 hour'), credentials: issuer });
      assert401(await rawRequest(q.rootUrl, { method: 'GET', path: `/api/queue/v1/task/${taskId}`, credentials: creds }), /does not hold/);
    });
  });

  it('restricts a request to its authorizedScopes, and refuses ones the client lacks with 401', async () => {
    const narrow = await get({ credentials: q.credentials, authorizedScopes: ['queue:get-task:*'] });
    assertError(narrow, 403, 'InsufficientScopes');
    assert.equal((await get({ credentials: q.credentials, authorizedScopes: [`queue:status:${taskId}`] })).status, 200);
    const client = await storedClient('narrow-client', ['queue:status:*']);
    assert401(await get({ credentials: client, authorizedScopes: ['queue:*'] }), /authorizedScopes/);
  });

  describe('bewit (signed URLs) for GET', () => {
    it('authenticates a GET', async () => {
      const url = q.queue().buildSignedUrl(q.queue().status, taskId);
      const res = await fetch(url);
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as any).status.taskId, taskId);
    });

    it('is refused with 401 once expired, when tampered with, on another path, on a POST, or beside a header', async () => {
      const expired = q.queue().buildSignedUrl(q.queue().status, taskId, { expiration: -60 });
      assert.equal((await fetch(expired)).status, 401);
      const good = q.queue().buildSignedUrl(q.queue().status, taskId);
      const bewit = new URL(good).searchParams.get('bewit')!;
      const tampered = good.replace(/bewit=[^&]+/, `bewit=${bewit.slice(0, -4)}AAAA`);
      assert.equal((await fetch(tampered)).status, 401);
      const otherTask = slugid();
      assert.equal((await fetch(good.replace(taskId, otherTask))).status, 401);
      assert401(await rawRequest(q.rootUrl, { method: 'POST', path: `/api/queue/v1/task/${taskId}/cancel?bewit=${bewit}` }));
      const both = await rawRequest(q.rootUrl, { method: 'GET', path: `${statusPath()}?bewit=${bewit}`, credentials: q.credentials });
      assert401(both);
      const res = await fetch(expired);
      assert.match(res.headers.get('www-authenticate') ?? '', /^hawk/i);
    });

    it('refuses a bewit whose client id PostgreSQL cannot even look up with 401, not 500', async () => {
      const bewit = Buffer.from(`a\u0000b\\${Math.floor(Date.now() / 1000) + 60}\\mac\\`).toString('base64url');
      assert401(await rawRequest(q.rootUrl, { method: 'GET', path: `${statusPath()}?bewit=${bewit}` }));
      const latin = Buffer.from(`\u00e9t\u00e9\\${Math.floor(Date.now() / 1000) + 60}\\mac\\`).toString('base64url');
      assert401(await rawRequest(q.rootUrl, { method: 'GET', path: `${statusPath()}?bewit=${latin}` }));
    });
  });

  describe('clients stored in PostgreSQL', () => {
    it('authenticate with their own scopes', async () => {
      const client = await storedClient('project-admin', [`queue:status:${taskId}`, 'queue:get-task:*']);
      const cq = q.queue({ credentials: client });
      assert.equal((await cq.status(taskId)).status.taskId, taskId);
      assert.equal((await cq.task(taskId)).taskQueueId, 'test-prov/test-wt');
      await rejectsWith(cq.cancelTask(taskId), 403, 'InsufficientScopes');
      await rejectsWith(q.queue({ credentials: { ...client, accessToken: 'wrong' } }).status(taskId), 401, 'AuthenticationFailed');
    });

    it('are refused with 401 once disabled or expired', async () => {
      const db = q.service.ctx.db;
      const disabled = await storedClient('soon-disabled', ['queue:status:*']);
      assert.equal((await get({ credentials: disabled })).status, 200);
      await db.updateTable('clients').set({ disabled: true }).where('client_id', '=', 'soon-disabled').execute();
      assert401(await get({ credentials: disabled }), /disabled/);
      const expired = await storedClient('soon-expired', ['queue:status:*']);
      await db.updateTable('clients').set({ expires: new Date(Date.now() - 1000) }).where('client_id', '=', 'soon-expired').execute();
      assert401(await get({ credentials: expired }), /expired/);
    });

    const tokenOf = async (clientId: string) =>
      (await q.service.ctx.db.selectFrom('clients').select('access_token').where('client_id', '=', clientId).executeTakeFirstOrThrow()).access_token;
    const quiet = { info: () => {}, error: () => {} };

    it('a client created by the CLI authenticates; its row holds only ciphertext', async () => {
      const client = await storedClient('cli-made', ['queue:status:*']);
      const stored = await tokenOf('cli-made');
      assert.ok(!stored.includes(client.accessToken), stored);
      assert.match(stored, /^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{64,}$/);
      assert.equal(decryptToken(q.config.clientTokenKey!, 'cli-made', stored), client.accessToken);
      const status = await q.queue({ credentials: client }).status(taskId);
      assert.equal(status.status.taskId, taskId);
      await rejectsWith(q.queue({ credentials: client }).cancelTask(taskId), 403, 'InsufficientScopes');
      // the stored ciphertext is not a token either
      await rejectsWith(q.queue({ credentials: { clientId: 'cli-made', accessToken: stored } }).status(taskId), 401, 'AuthenticationFailed');
      // re-creating it issues a new token, and only that one works
      const again = await storedClient('cli-made', ['queue:status:*']);
      assert.notEqual(again.accessToken, client.accessToken);
      assert.equal((await q.queue({ credentials: again }).status(taskId)).status.taskId, taskId);
      await rejectsWith(q.queue({ credentials: client }).status(taskId), 401, 'AuthenticationFailed');
    });

    it('plain-text rows of earlier versions are encrypted once at start, even by two replicas at once, and still authenticate', async () => {
      const legacy = Array.from({ length: 5 }, (_, i) => ({ clientId: `legacy-${i}`, accessToken: randomBytes(32).toString('base64url') }));
      await q.service.ctx.db
        .insertInto('clients')
        .values(legacy.map((c) => ({ client_id: c.clientId, access_token: c.accessToken, scopes: JSON.stringify(['queue:status:*']), expires: new Date(Date.now() + 3600_000) })))
        .execute();
      // two replicas of the new version start together on that database
      const replicas = await Promise.all([0, 1].map(() => startQueue({ config: { ...q.config, port: 0 }, api: true, loops: false })));
      try {
        for (const c of legacy) {
          const stored = await tokenOf(c.clientId);
          assert.ok(stored.startsWith('v1.') && !stored.includes(c.accessToken), stored);
          assert.equal(decryptToken(q.config.clientTokenKey!, c.clientId, stored), c.accessToken);
          for (const r of replicas) {
            const res = await rawRequest(r.url, { method: 'GET', path: statusPath(), credentials: c });
            assert.equal(res.status, 200, res.text);
            assert.equal(res.body.status.taskId, taskId);
          }
        }
        assert.equal((await q.queue({ credentials: legacy[0] }).status(taskId)).status.taskId, taskId);
      } finally {
        await Promise.all(replicas.map((r) => r.stop()));
      }
      // nothing is left to encrypt, and encrypting again changes nothing
      const before = await Promise.all(legacy.map((c) => tokenOf(c.clientId)));
      assert.equal(await encryptPlainTokens(q.service.ctx.db, q.config.clientTokenKey!, quiet), 0);
      assert.deepEqual(await Promise.all(legacy.map((c) => tokenOf(c.clientId))), before);
    });

    it('concurrent encryptions of the same plain rows update each row exactly once', async () => {
      const plain = Array.from({ length: 20 }, (_, i) => ({ clientId: `race-${i}`, accessToken: `race-token-${i}-${randomBytes(8).toString('hex')}` }));
      await q.service.ctx.db
        .insertInto('clients')
        .values(plain.map((c) => ({ client_id: c.clientId, access_token: c.accessToken, scopes: JSON.stringify([]), expires: new Date(Date.now() + 3600_000) })))
        .execute();
      const counts = await Promise.all([1, 2, 3].map(() => encryptPlainTokens(q.service.ctx.db, q.config.clientTokenKey!, quiet)));
      assert.equal(counts.reduce((a, b) => a + b, 0), plain.length);
      for (const c of plain) assert.equal(decryptToken(q.config.clientTokenKey!, c.clientId, await tokenOf(c.clientId)), c.accessToken);
    });

    it('a token stored under another key makes its client unknown: 401 with the Taskcluster error body, one error logged', async () => {
      const accessToken = randomBytes(32).toString('base64url');
      await storeClient(q.service.ctx.db, randomBytes(32), { clientId: 'other-key', accessToken, scopes: ['queue:status:*'], expires: new Date(Date.now() + 3600_000) });
      assert401(await get({ credentials: { clientId: 'other-key', accessToken } }), /Unknown clientId "other-key"/);
      await rejectsWith(q.queue({ credentials: { clientId: 'other-key', accessToken } }).status(taskId), 401, 'AuthenticationFailed');

      const logged: { obj: object; msg: string }[] = [];
      const log = { info: () => {}, error: (obj: object, msg: string) => logged.push({ obj, msg }) };
      const lookup = clientLookup(q.service.ctx.db, q.config, log);
      assert.equal(await lookup('other-key'), undefined);
      assert.equal(await lookup('other-key'), undefined);
      assert.equal(logged.length, 1, 'one error per undecryptable token, not one per request');
      assert.deepEqual(logged[0]!.obj, { clientId: 'other-key' });
      assert.match(logged[0]!.msg, /client other-key does not decrypt with CLIENT_TOKEN_KEY/);
      // a client that does decrypt is looked up as before, and logs nothing
      const good = await storedClient('good-one', ['queue:status:*']);
      assert.equal((await lookup('good-one'))?.accessToken, good.accessToken);
      assert.equal(logged.length, 1);
    });

    it('a ciphertext moved onto another clientId does not authenticate (the clientId is bound to it)', async () => {
      const victim = await storedClient('aad-victim', ['queue:status:*', 'queue:cancel-task:*']);
      const mallory = await storedClient('aad-mallory', []);
      // someone with write access to the table copies the victim's ciphertext onto their own row
      await q.service.ctx.db.updateTable('clients').set({ access_token: await tokenOf('aad-victim') }).where('client_id', '=', 'aad-mallory').execute();
      assert401(await get({ credentials: { clientId: 'aad-mallory', accessToken: victim.accessToken } }), /Unknown clientId "aad-mallory"/);
      await rejectsWith(q.queue({ credentials: { clientId: 'aad-mallory', accessToken: victim.accessToken } }).status(taskId), 401, 'AuthenticationFailed');
      await rejectsWith(q.queue({ credentials: mallory }).status(taskId), 401, 'AuthenticationFailed');
      // the victim is unaffected
      assert.equal((await q.queue({ credentials: victim }).status(taskId)).status.taskId, taskId);
    });
  });
});
