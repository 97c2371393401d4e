// Fuzzing: a few hundred random or mutated createTask bodies, and random bodies on every endpoint
// that takes one, never get a 500, and a refused createTask stores nothing. Seeded: a failure
// names its seed; replay it with FUZZ_SEED=<seed> node scripts/test.js test/fuzz.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { schemas } from '@conveyor/schemas';
import { endpoints } from '../services/queue/src/http/routes.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { rawRequest } from './harness/http.js';
import { invariantViolations, tableCounts } from './harness/invariants.js';
import { mutatedBody, percentEncoded, prng, randomString, randomValue } from './harness/fuzz.js';

describe('fuzzing', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1 });
  });
  after(async () => {
    await q?.stop();
  });

  it('createTask: a few hundred mutated bodies never get a 500, and a refused one stores nothing', async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
    const rand = prng(seed);
    const statuses = new Map<number, number>();
    const used: string[] = [];
    let before = await tableCounts(q.service.ctx.db);
    for (let i = 0; i < 300; i++) {
      const reuse = used.length > 0 && rand() < 0.1;
      const id = reuse ? used[Math.floor(rand() * used.length)]! : rand() < 0.05 ? randomString(rand) : slugid();
      const text = mutatedBody(rand);
      const res = await rawRequest(q.rootUrl, {
        method: 'PUT', path: `/api/queue/v1/task/${percentEncoded(id)}`, body: text, credentials: q.credentials,
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

  it('every endpoint that takes a body: random bodies never get a 500', async () => {
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
