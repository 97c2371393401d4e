// Worker records: declareWorker, getWorker, listWorkers, quarantineWorker.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { allPages, assertSchema, expectError, nulToken, withClockAt, wrongShapeToken } from './harness/listing.js';
import { slugid, taskDef } from './harness/tasks.js';

const rand = () => Math.random().toString(36).slice(2, 10);
const dayMs = 24 * 3600 * 1000;

describe('worker records', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue();
  });
  after(async () => {
    await q?.stop();
  });

  /** A fresh provisionerId/workerType pair. */
  const newQueue = () => ({ prov: `p${rand()}`, wt: 'wt' });

  it('declareWorker creates the worker and its queue, and never moves expiry backwards', async () => {
    const queue = q.queue();
    const { prov, wt } = newQueue();
    const expires = taskcluster.fromNowJSON('3 days');
    const w = await queue.declareWorker(prov, wt, 'wg', 'w1', { expires });
    assertSchema('v1/worker-response.json', w);
    assert.deepEqual(
      { ...w, firstClaim: undefined },
      {
        provisionerId: prov, workerType: wt, workerGroup: 'wg', workerId: 'w1', recentTasks: [],
        expires: new Date(expires).toISOString(), firstClaim: undefined, quarantineDetails: [], actions: [],
      },
    );
    assert.ok(Math.abs(Date.parse(w.firstClaim) - Date.now()) < 60_000);
    assert.deepEqual(await queue.getWorker(prov, wt, 'wg', 'w1'), w);
    assert.equal((await queue.getTaskQueue(`${prov}/${wt}`)).expires, w.expires);

    // earlier: ignored; later: extended (worker and queue)
    const earlier = await queue.declareWorker(prov, wt, 'wg', 'w1', { expires: taskcluster.fromNowJSON('1 day') });
    assert.equal(earlier.expires, w.expires);
    assert.equal(earlier.firstClaim, w.firstClaim);
    const laterExpires = new Date(taskcluster.fromNowJSON('5 days')).toISOString();
    assert.equal((await queue.declareWorker(prov, wt, 'wg', 'w1', { expires: laterExpires })).expires, laterExpires);
    assert.equal((await queue.getTaskQueue(`${prov}/${wt}`)).expires, laterExpires);
  });

  it('declareWorker needs a scope per body property and a valid body', async () => {
    const { prov, wt } = newQueue();
    const expires = taskcluster.fromNowJSON('1 day');
    const base = `queue:declare-worker:${prov}/${wt}/wg/w1`;
    await q.queue({ authorizedScopes: [`${base}#expires`] }).declareWorker(prov, wt, 'wg', 'w1', { expires });
    await expectError(q.queue({ authorizedScopes: [`${base}#other`] }).declareWorker(prov, wt, 'wg', 'w1', { expires }), 403, 'InsufficientScopes');
    await expectError(q.queue({ authorizedScopes: [`${base.replace('/w1', '/w2')}#expires`] }).declareWorker(prov, wt, 'wg', 'w1', { expires }), 403, 'InsufficientScopes');
    // the body is checked before the scopes, as in Taskcluster
    await expectError(q.queue({ credentials: {} }).declareWorker(prov, wt, 'wg', 'w3', {}), 400, 'InputValidationError');
    await expectError(q.queue().declareWorker(prov, wt, 'wg', 'w3', { expires, other: 1 }), 400, 'InputValidationError');
    await expectError(q.queue().declareWorker(prov, wt, 'wg', 'w3', { expires: 'tomorrow' }), 400, 'InputValidationError');
    await expectError(q.queue().declareWorker(prov, 'Bad_Type', 'wg', 'w3', { expires }), 400, 'InvalidRequestArguments');
    // nothing was stored by the refused calls
    assert.deepEqual((await q.queue().listWorkers(prov, wt)).workers.map((w: any) => w.workerId), ['w1']);
  });

  it('getWorker shows the last 20 claims and when the worker was active', async () => {
    const queue = q.queue();
    const { prov, wt } = newQueue();
    const taskQueueId = `${prov}/${wt}`;
    const ids: string[] = [];
    for (let i = 0; i < 22; i++) {
      const taskId = slugid();
      await queue.createTask(taskId, taskDef({ taskQueueId }));
      ids.push(taskId);
    }
    // one claim per call, so the order of the claims is known
    for (let i = 0; i < 22; i++) {
      const { tasks } = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'busy', tasks: 1 });
      assert.equal(tasks[0].status.taskId, ids[i]);
    }
    const w = await queue.getWorker(prov, wt, 'wg', 'busy');
    assertSchema('v1/worker-response.json', w);
    assert.deepEqual(w.recentTasks, ids.slice(2).map((taskId) => ({ taskId, runId: 0 })));
    assert.ok(Date.parse(w.lastDateActive) >= Date.parse(w.firstClaim));
    assert.ok(Date.parse(w.expires) > Date.now() + dayMs - 60_000);
    assert.equal(w.quarantineUntil, undefined);

    await expectError(queue.getWorker(prov, wt, 'wg', 'nobody'), 404, 'ResourceNotFound');
    await expectError(queue.getWorker(prov, 'other', 'wg', 'busy'), 404, 'ResourceNotFound');
  });

  it('listWorkers pages through workers by group and id, with the latest task', async () => {
    const queue = q.queue();
    const { prov, wt } = newQueue();
    const expires = taskcluster.fromNowJSON('1 day');
    const names = [['a', 'w2'], ['a', 'w1'], ['b', 'w0'], ['a', 'w3'], ['c', 'w9']];
    for (const [g, id] of names) await queue.declareWorker(prov, wt, g, id, { expires });
    const taskId = slugid();
    await queue.createTask(taskId, taskDef({ taskQueueId: `${prov}/${wt}` }));
    await queue.claimWork(`${prov}/${wt}`, { workerGroup: 'b', workerId: 'w0', tasks: 1 });

    const whole = await queue.listWorkers(prov, wt);
    assertSchema('v1/list-workers-response.json', whole);
    assert.equal(whole.continuationToken, undefined);
    assert.deepEqual(whole.workers.map((w: any) => `${w.workerGroup}/${w.workerId}`), ['a/w1', 'a/w2', 'a/w3', 'b/w0', 'c/w9']);
    assert.deepEqual(whole.workers[3].latestTask, { taskId, runId: 0 });
    assert.equal(whole.workers[0].latestTask, undefined);

    const { items, pages } = await allPages<any>((query) => queue.listWorkers(prov, wt, query), 'workers', 2);
    assert.equal(pages, 3);
    assert.deepEqual(items, whole.workers);
    await expectError(queue.listWorkers(prov, wt, { continuationToken: wrongShapeToken }), 400, 'InvalidRequestArguments');
    await expectError(queue.listWorkers(prov, wt, { continuationToken: '%%%' }), 400, 'InvalidRequestArguments');
    await expectError(queue.listWorkers(prov, wt, { quarantined: 'maybe' }), 400, 'InvalidRequestArguments');
    assert.deepEqual(await queue.listWorkers(prov, 'empty'), { workers: [] });
  });

  it('quarantineWorker records who, when and why; a past date lifts it', async () => {
    const queue = q.queue();
    const { prov, wt } = newQueue();
    await queue.declareWorker(prov, wt, 'wg', 'w1', { expires: taskcluster.fromNowJSON('1 hour') });
    await queue.declareWorker(prov, wt, 'wg', 'w2', { expires: taskcluster.fromNowJSON('1 hour') });

    const until = new Date(taskcluster.fromNowJSON('10 days')).toISOString();
    const w = await queue.quarantineWorker(prov, wt, 'wg', 'w1', { quarantineUntil: until, quarantineInfo: 'bad disk' });
    assertSchema('v1/worker-response.json', w);
    assert.equal(w.quarantineUntil, until);
    assert.equal(w.quarantineDetails.length, 1);
    const [d] = w.quarantineDetails;
    assert.deepEqual({ ...d, updatedAt: undefined }, { clientId: q.credentials.clientId, updatedAt: undefined, quarantineUntil: until, quarantineInfo: 'bad disk' });
    assert.ok(Math.abs(Date.parse(d.updatedAt) - Date.now()) < 60_000);
    // the record is kept at least a day past the change
    assert.ok(Date.parse(w.expires) > Date.now() + dayMs - 60_000);
    assert.deepEqual(await queue.getWorker(prov, wt, 'wg', 'w1'), w);

    const names = async (query: object) => (await queue.listWorkers(prov, wt, query)).workers.map((x: any) => x.workerId);
    assert.deepEqual(await names({ quarantined: 'true' }), ['w1']);
    assert.deepEqual(await names({ quarantined: 'false' }), ['w2']);
    assert.equal((await queue.listWorkers(prov, wt)).workers[0].quarantineUntil, until);

    const past = new Date(Date.now() - 1000).toISOString();
    const lifted = await queue.quarantineWorker(prov, wt, 'wg', 'w1', { quarantineUntil: past });
    assert.deepEqual(lifted.quarantineDetails.map((x: any) => [x.quarantineUntil, x.quarantineInfo]), [[until, 'bad disk'], [past, '']]);
    assert.deepEqual(await names({ quarantined: 'true' }), []);
    assert.deepEqual(await names({ quarantined: 'false' }), ['w1', 'w2']);

    await expectError(queue.quarantineWorker(prov, wt, 'wg', 'nobody', { quarantineUntil: until }), 404, 'ResourceNotFound');
    await expectError(queue.quarantineWorker(prov, wt, 'wg', 'w1', {}), 400, 'InputValidationError');
    await expectError(queue.quarantineWorker(prov, wt, 'wg', 'w1', { quarantineUntil: until, quarantineInfo: 'a\u0000b' }), 400, 'InputValidationError');
    await expectError(queue.listWorkers(prov, wt, { continuationToken: nulToken }), 400, 'InvalidRequestArguments');
    await expectError(queue.quarantineWorker(prov, wt, 'wg', 'w1', { quarantineUntil: until, quarantineInfo: 'x'.repeat(4001) }), 400, 'InputValidationError');
  });

  it('hides expired workers unless they are quarantined', async () => {
    const queue = q.queue();
    const { prov, wt } = newQueue();
    const expires = new Date(taskcluster.fromNowJSON('2 hours'));
    for (const id of ['gone', 'held']) await queue.declareWorker(prov, wt, 'wg', id, { expires: expires.toISOString() });
    // quarantined well past the record's expiry (quarantine only bumps expiry to now + 1 day)
    const until = taskcluster.fromNowJSON('30 days');
    await queue.quarantineWorker(prov, wt, 'wg', 'held', { quarantineUntil: until });

    await withClockAt(q, new Date(Date.now() + 2 * dayMs), async () => {
      assert.deepEqual((await queue.listWorkers(prov, wt)).workers.map((x: any) => x.workerId), ['held']);
      await expectError(queue.getWorker(prov, wt, 'wg', 'gone'), 404, 'ResourceNotFound');
      assert.equal((await queue.getWorker(prov, wt, 'wg', 'held')).quarantineUntil, new Date(until).toISOString());
    });
  });

  it('needs exactly the declared scopes', async () => {
    const { prov, wt } = newQueue();
    await q.queue().declareWorker(prov, wt, 'wg', 'w1', { expires: taskcluster.fromNowJSON('1 day') });
    const only = (...scopes: string[]) => q.queue({ authorizedScopes: scopes });
    const denied = (call: Promise<unknown>) => expectError(call, 403, 'InsufficientScopes');
    const until = { quarantineUntil: taskcluster.fromNowJSON('1 hour') };

    await only(`queue:list-workers:${prov}/${wt}`).listWorkers(prov, wt);
    await denied(only(`queue:list-workers:${prov}/other`).listWorkers(prov, wt));
    await only(`queue:get-worker:${prov}/${wt}/wg/w1`).getWorker(prov, wt, 'wg', 'w1');
    await denied(only(`queue:get-worker:${prov}/${wt}/wg/w2`).getWorker(prov, wt, 'wg', 'w1'));
    await only(`queue:quarantine-worker:${prov}/${wt}/wg/w1`).quarantineWorker(prov, wt, 'wg', 'w1', until);
    await denied(only(`queue:get-worker:${prov}/${wt}/wg/w1`).quarantineWorker(prov, wt, 'wg', 'w1', until));
    // scopes that need only the URL are checked first: no 404 leaks to a caller without them
    await denied(only().getWorker(prov, wt, 'wg', 'nobody'));
  });
});
