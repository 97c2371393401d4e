// Bad input of every kind gets a 4xx in Taskcluster's error format, stores nothing, and never a
// 500: oversized and malformed bodies, wrong content types, bad URLs, query options and paging
// tokens, deep nesting, and a few hundred random or mutated createTask bodies.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { endpoints } from '../services/queue/src/http/routes.js';
import { routeParams } from '../services/queue/src/http/endpoint.js';
import { schemas } from '@conveyor/schemas';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { assertError, rawRequest, type RawRequest } from './harness/http.js';
import { invariantViolations, tableCounts } from './harness/invariants.js';

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

  describe('fuzzed createTask bodies', () => {
    it('never get a 500, and a refused body stores nothing', async () => {
      const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
      const rand = prng(seed);
      const statuses = new Map<number, number>();
      const used: string[] = [];
      let before = await tableCounts(q.service.ctx.db);
      for (let i = 0; i < 300; i++) {
        const reuse = used.length > 0 && rand() < 0.1;
        const id = reuse ? used[Math.floor(rand() * used.length)]! : rand() < 0.05 ? randomString(rand) : slugid();
        const text = mutatedBody(rand);
        const res = await send({
          method: 'PUT', path: `/api/queue/v1/task/${percentEncoded(id)}`, body: text,
          headers: { 'content-type': 'application/json' },
        });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        assert.ok(res.status < 500, `seed ${seed} #${i}: ${res.status} ${res.text.slice(0, 300)}\nbody: ${text.slice(0, 500)}`);
        const now = await tableCounts(q.service.ctx.db);
        if (res.status === 200) used.push(id);
        else {
          assert.equal(typeof res.body?.code, 'string', `seed ${seed} #${i}: ${res.text.slice(0, 200)}`);
          assert.deepEqual(now, before, `seed ${seed} #${i}: a ${res.status} stored something\nbody: ${text.slice(0, 500)}`);
        }
        before = now;
      }
      // the generator must reach both sides of the validator
      assert.ok((statuses.get(200) ?? 0) > 15, `seed ${seed}: ${JSON.stringify([...statuses])}`);
      assert.ok((statuses.get(400) ?? 0) > 80, `seed ${seed}: ${JSON.stringify([...statuses])}`);
      assert.deepEqual(await invariantViolations(q.service.ctx.db), []);
    });
  });
});


describe('fuzzed bodies on every endpoint that takes one', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1 });
  });
  after(async () => {
    await q?.stop();
  });

  it('never get a 500', async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
    const rand = prng(seed);
    const taskId = slugid();
    const taskQueueId = uniqueQueue();
    await q.queue().createTask(taskId, taskDef({ taskQueueId }));
    await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
    const fill: Record<string, string> = {
      taskId, taskGroupId: taskId, runId: '0', taskQueueId: encodeURIComponent(taskQueueId), provisionerId: taskQueueId.split('/')[0]!,
      workerType: taskQueueId.split('/')[1]!, workerGroup: 'wg', workerId: 'w', name: 'private%2Ffuzz.txt',
    };
    for (const e of endpoints.filter((x) => x.input && x.name !== 'createTask')) {
      const properties = Object.keys((schemas[e.input!] as { properties?: object }).properties ?? {});
      const path = '/api/queue/v1' + e.route.replace(/<([a-zA-Z]+)>/g, (_m, p: string) => fill[p] ?? 'x');
      for (let i = 0; i < 25; i++) {
        let body: unknown = randomValue(rand);
        if (rand() < 0.7) {
          const o: Record<string, unknown> = {};
          for (const k of properties) if (rand() < 0.7) o[k] = randomValue(rand);
          body = o;
        }
        const res = await rawRequest(q.rootUrl, {
          method: e.method, path, credentials: q.credentials, body: JSON.stringify(body), headers: { 'content-type': 'application/json' },
        });
        assert.ok(res.status < 500, `seed ${seed} ${e.name}: ${res.status} ${res.text.slice(0, 300)}\nbody: ${JSON.stringify(body).slice(0, 300)}`);
      }
    }
    assert.deepEqual(await invariantViolations(q.service.ctx.db), []);
  });
});

/** mulberry32: a small seeded generator, so a failure can be replayed with FUZZ_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every UTF-8 byte percent-encoded (encodeURIComponent throws on unpaired surrogates). */
const percentEncoded = (s: string) => [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

function randomString(rand: () => number): string {
  const alphabets = ['abcXYZ019-_', './:*<>', ' \t\n"\\', '\u0000\u0001\u007f', 'éß中文🎉', '\ud800\udc00\udfff', '%2F%00'];
  const n = Math.floor(rand() * (rand() < 0.1 ? 300 : 24));
  let s = '';
  for (let i = 0; i < n; i++) {
    const a = pick(rand, alphabets);
    s += a[Math.floor(rand() * a.length)];
  }
  return s;
}

function randomDate(rand: () => number): string {
  const offsetMs = pick(rand, [0, -60_000, 3600_000, 86_400_000, -86_400_000 * 400, 86_400_000 * 400, 1e15]);
  const iso = new Date(Math.min(Date.now() + offsetMs, 253402300799000)).toISOString();
  return pick(rand, [
    iso, iso.replace('Z', '+00:00'), iso.replace('Z', '+05'), iso.replace(/T\d\d:\d\d:\d\d/, 'T23:59:60'), iso.slice(0, 10),
    iso.replace('T', ' '), iso.toLowerCase(), iso.replace('.', ',').replace('Z', ''), '0000-01-01T00:00:00Z', '9999-12-31T23:59:59.999999Z',
    randomString(rand),
  ]);
}

function randomValue(rand: () => number, depth = 0): unknown {
  switch (Math.floor(rand() * (depth > 3 ? 6 : 8))) {
    case 0: return randomString(rand);
    case 1: return pick(rand, [0, -1, 1.5, 49, 50, 1e21, -0, 2 ** 53 + 1, 1e308]);
    case 2: return rand() < 0.5;
    case 3: return null;
    case 4: return randomDate(rand);
    case 5: return pick(rand, ['highest', 'normal', 'lowest', 'all-resolved', 'test-prov/test-wt', 'https://x', slugidLike(rand)]);
    case 6: return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(rand() * 4); i > 0; i--) o[randomString(rand) || 'k'] = randomValue(rand, depth + 1);
      return o;
    }
  }
}

function slugidLike(rand: () => number): string {
  return rand() < 0.7 ? slugid() : slugid().slice(0, 21) + pick(rand, ['A', 'B', '-', '_']);
}

const fields = ['taskQueueId', 'provisionerId', 'workerType', 'schedulerId', 'projectId', 'taskGroupId', 'dependencies', 'requires',
  'routes', 'priority', 'retries', 'created', 'deadline', 'expires', 'scopes', 'payload', 'metadata', 'tags', 'extra'];

/** A createTask body: valid, then changed in a few random ways, as JSON text (sometimes broken text). */
function mutatedBody(rand: () => number): string {
  const body: Record<string, any> = taskDef({ taskQueueId: pick(rand, ['test-prov/test-wt', uniqueQueue()]) });
  const mutations = Math.floor(rand() * 4);
  for (let m = 0; m < mutations; m++) {
    const field = pick(rand, [...fields, 'metadata.name', 'metadata.source', 'tags.x', 'routes.0', 'scopes.0', 'dependencies.0', randomString(rand)]);
    const action = rand();
    const [top, sub] = field.split('.') as [string, string | undefined];
    if (sub !== undefined) {
      const holder = typeof body[top] === 'object' && body[top] !== null ? body[top] : (body[top] = sub === '0' ? [] : {});
      if (action < 0.2) delete holder[sub];
      else holder[sub] = randomValue(rand);
    } else if (action < 0.2) {
      delete body[top];
    } else if (action < 0.35 && ['created', 'deadline', 'expires'].includes(top)) {
      body[top] = randomDate(rand);
    } else {
      body[top] = randomValue(rand);
    }
  }
  let text = JSON.stringify(body);
  if (rand() < 0.05) text = text.slice(0, Math.floor(rand() * text.length));
  if (rand() < 0.05) {
    const at = Math.floor(rand() * text.length);
    text = text.slice(0, at) + randomString(rand) + text.slice(at);
  }
  return text;
}
