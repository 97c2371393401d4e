// Bad input of every kind gets a 4xx in Taskcluster's error format, stores nothing, and never a
// 500: oversized and malformed bodies, wrong content types, bad URLs, query options and paging
// tokens, deep nesting. (Random and mutated bodies: fuzz.test.ts.)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { endpoints } from '../services/queue/src/http/routes.js';
import { routeParams } from '../services/queue/src/http/endpoint.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { assertError, rawRequest, type RawRequest } from './harness/http.js';
import { tableCounts } from './harness/invariants.js';

describe('bad input', () => {
  let q: TestQueue;
  let taskId: string;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1 });
    taskId = slugid();
    await q.queue().createTask(taskId, taskDef());
  });
  after(async () => {
    await q?.stop();
  });

  const send = (r: Omit<RawRequest, 'credentials'> & { anonymous?: boolean }) =>
    rawRequest(q.rootUrl, { ...r, ...(r.anonymous ? {} : { credentials: q.credentials }) });
  const put = (body: unknown, headers?: Record<string, string>, id = slugid()) =>
    send({ method: 'PUT', path: `/api/queue/v1/task/${id}`, body, ...(headers ? { headers } : {}) });

  /** The request must be refused with this status/code and leave the database as it was. */
  async function refused(make: () => Promise<Awaited<ReturnType<typeof send>>>, status: number, code: string) {
    const before = await tableCounts(q.service.ctx.db);
    const res = await make();
    assertError(res, status, code);
    assert.deepEqual(await tableCounts(q.service.ctx.db), before);
    return res;
  }

  describe('bodies', () => {
    it('over 10 MB: 413 InputTooLarge', async () => {
      const big = JSON.stringify(taskDef({ payload: { blob: 'x'.repeat(10 * 1024 * 1024) } }));
      await refused(() => put(big, { 'content-type': 'application/json' }), 413, 'InputTooLarge');
    });

    it('just under 10 MB: accepted', async () => {
      const body = JSON.stringify(taskDef({ payload: { blob: 'x'.repeat(9 * 1024 * 1024) } }));
      const res = await put(body, { 'content-type': 'application/json' });
      assert.equal(res.status, 200, res.text.slice(0, 300));
    });

    it('malformed JSON: 400 MalformedPayload', async () => {
      for (const text of ['{', '{"a":', 'nul', '{"created": 2026-01-01}', "{'a': 1}", '{"a":1}x', '\u0000']) {
        await refused(() => put(text, { 'content-type': 'application/json' }), 400, 'MalformedPayload');
      }
    });

    it('JSON that is not an object: 400 InputValidationError', async () => {
      for (const text of ['null', '[]', '"task"', '42', 'true']) {
        await refused(() => put(text, { 'content-type': 'application/json' }), 400, 'InputValidationError');
      }
      await refused(() => put('', { 'content-type': 'application/json' }), 400, 'InputValidationError');
    });

    it('a body that is not application/json: 400 MalformedPayload', async () => {
      const body = JSON.stringify(taskDef());
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream', 'multipart/form-data; boundary=x']) {
        await refused(() => put(body, { 'content-type': type }), 400, 'MalformedPayload');
      }
      await refused(() => send({
        method: 'POST', path: `/api/queue/v1/claim-work/${encodeURIComponent(uniqueQueue())}`,
        body: '{"workerGroup":"wg","workerId":"w"}', headers: { 'content-type': 'text/plain' },
      }), 400, 'MalformedPayload');
      // application/json with parameters is JSON
      const ok = await put(body, { 'content-type': 'application/json; charset=utf-8' });
      assert.equal(ok.status, 200, ok.text);
    });

    it('a JSON body on an endpoint that takes none is ignored, whatever keys it has', async () => {
      const id = slugid();
      await q.queue().createTask(id, taskDef());
      for (const body of [{ pipe: 1 }, { pipe: 'x', resume: 1, on: 2 }, [1, 2]]) {
        const res = await send({ method: 'POST', path: `/api/queue/v1/task/${id}/schedule`, body });
        assert.equal(res.status, 200, res.text);
      }
      const res = await send({ method: 'POST', path: `/api/queue/v1/task/${id}/runs/0/completed`, body: { pipe: true } });
      assertError(res, 409, 'RequestConflict');
    });

    it('a JSON body with a key named like a stream method is still validated as JSON', async () => {
      const res = await refused(() => put(taskDef({ pipe: 1 })), 400, 'InputValidationError');
      assert.match(res.body.message, /pipe/);
    });

    it('deep nesting: a 4xx, never a crash', async () => {
      for (const depth of [1000, 10_000, 100_000]) {
        const payload = '['.repeat(depth) + ']'.repeat(depth);
        const text = JSON.stringify(taskDef({ payload: { x: 0 } })).replace('{"x":0}', `{"x":${payload}}`);
        const res = await put(text, { 'content-type': 'application/json' });
        assert.ok(res.status < 500, `depth ${depth}: ${res.status} ${res.text.slice(0, 200)}`);
      }
    });
  });

  describe('URLs and query strings', () => {
    it('unknown query options: 400 InvalidRequestArguments', async () => {
      assertError(await send({ method: 'GET', path: `/api/queue/v1/task/${taskId}/status?foo=1` }), 400, 'InvalidRequestArguments');
      await refused(() => send({ method: 'PUT', path: `/api/queue/v1/task/${slugid()}?force=true`, body: taskDef() }), 400, 'InvalidRequestArguments');
    });

    it('bad limits and paging tokens on every paged endpoint: 400 InvalidRequestArguments', async () => {
      const paged = endpoints.filter((e) => e.query?.includes('continuationToken'));
      assert.ok(paged.length >= 2);
      const fill: Record<string, string> = {
        taskId, taskGroupId: taskId, runId: '0', taskQueueId: encodeURIComponent('test-prov/test-wt'),
        provisionerId: 'test-prov', workerType: 'test-wt', workerGroup: 'wg', workerId: 'w', name: 'public%2Fx',
      };
      for (const e of paged) {
        const path = '/api/queue/v1' + e.route.replace(/<([a-zA-Z]+)>/g, (_m, p: string) => fill[p] ?? 'x');
        const body = e.input === 'v1/tasks-request.json' ? { taskIds: [taskId] } : undefined;
        for (const query of ['continuationToken=%21%21%21', 'continuationToken=abc', `continuationToken=${Buffer.from('{"a":1}').toString('base64url')}`,
          `continuationToken=${Buffer.from('[{"o":1}]').toString('base64url')}`, 'limit=0', 'limit=-1', 'limit=x', 'limit=1.5', 'limit=99999']) {
          const res = await send({ method: e.method, path: `${path}?${query}`, ...(body ? { body } : {}) });
          assert.equal(res.status, 400, `${e.name}?${query}: ${res.status} ${res.text.slice(0, 200)}`);
          assertError(res, 400, 'InvalidRequestArguments');
        }
        assert.deepEqual(routeParams(e.route).filter((p) => !(p in fill)), [], `no value for a URL parameter of ${e.name}`);
      }
    });

    it('URL parameters that do not match their pattern: 400, never a 500', async () => {
      for (const path of [
        '/api/queue/v1/task/abc/status', '/api/queue/v1/task/%00%00/status', `/api/queue/v1/task/${taskId}%2F/status`,
        `/api/queue/v1/task/${taskId}/runs/-1/reclaim`, `/api/queue/v1/task/${taskId}/runs/1e3/reclaim`,
        '/api/queue/v1/task/' + 'A'.repeat(5000) + '/status',
      ]) {
        const res = await send({ method: path.includes('reclaim') ? 'POST' : 'GET', path });
        assert.ok(res.status >= 400 && res.status < 500, `${path.slice(0, 80)}: ${res.status} ${res.text.slice(0, 200)}`);
        assert.equal(typeof res.body?.code, 'string', `${path.slice(0, 80)}: ${res.text.slice(0, 200)}`);
      }
    });

    it('broken percent-encoding and unknown routes: a 4xx in Taskcluster format', async () => {
      for (const path of ['/api/queue/v1/task/%E0%A4%A/status', '/api/queue/v1/claim-work/%ZZ', '/api/queue/v1/nope', '/api/queue/v2/ping', '/nothing']) {
        const res = await send({ method: 'GET', path });
        assert.ok(res.status >= 400 && res.status < 500, `${path}: ${res.status} ${res.text.slice(0, 200)}`);
        assert.equal(typeof res.body?.code, 'string', `${path}: ${res.text.slice(0, 200)}`);
      }
      assertError(await send({ method: 'GET', path: '/api/queue/v1/nope' }), 404, 'ResourceNotFound');
    });
  });
});
