// Task queue records and the deprecated provisioner / worker-type views derived from them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { allPages, assertSchema, expectError, nulToken, withClockAt, wrongShapeToken } from './harness/listing.js';

const rand = () => Math.random().toString(36).slice(2, 10);

describe('task queues, provisioners and worker types', () => {
  let q: TestQueue;
  before(async () => {
    // a short long-poll: one test polls an empty queue
    q = await startTestQueue({ anonymousScopes: ['queue:get-task-queue:anon/*'], claimWorkTimeoutSec: 1 });
  });
  after(async () => {
    await q?.stop();
  });

  /** Records a task queue the way a worker does, by declaring itself; returns the queue's expiry. */
  async function declareQueue(taskQueueId: string, expires = taskcluster.fromNowJSON('2 days')): Promise<string> {
    const [provisionerId, workerType] = taskQueueId.split('/');
    await q.queue().declareWorker(provisionerId, workerType, 'wg', 'w1', { expires });
    return new Date(expires).toISOString();
  }

  it('lists and gets unexpired task queues, page by page', async () => {
    const queue = q.queue();
    const prov = `p${rand()}`;
    const ids = [`${prov}/a`, `${prov}/b`, `${prov}/c`];
    const expires = [];
    for (const id of ids) expires.push(await declareQueue(id));

    const got = await queue.getTaskQueue(ids[1]);
    assertSchema('v1/taskqueue-response.json', got);
    assert.equal(got.taskQueueId, ids[1]);
    assert.equal(got.expires, expires[1]);
    assert.equal(got.description, '');
    assert.equal(got.stability, 'experimental');
    assert.ok(Math.abs(Date.parse(got.lastDateActive) - Date.now()) < 60_000);

    const first = await queue.listTaskQueues();
    assertSchema('v1/list-taskqueues-response.json', first);
    const { items, pages } = await allPages<any>((query) => queue.listTaskQueues(query), 'taskQueues', 2);
    assert.ok(pages >= 2);
    const all = items.map((t) => t.taskQueueId);
    assert.equal(new Set(all).size, all.length, 'no queue on two pages');
    assert.deepEqual(all, first.taskQueues.map((t: any) => t.taskQueueId));
    assert.deepEqual(all.filter((id) => id.startsWith(`${prov}/`)), ids);

    await expectError(queue.getTaskQueue(`${prov}/nope`), 404, 'ResourceNotFound');
    await expectError(queue.listTaskQueues({ continuationToken: 'garbage!' }), 400, 'InvalidRequestArguments');
    await expectError(queue.listTaskQueues({ continuationToken: wrongShapeToken }), 400, 'InvalidRequestArguments');
    await expectError(queue.listTaskQueues({ continuationToken: nulToken }), 400, 'InvalidRequestArguments');
  });

  it('hides expired task queues', async () => {
    const prov = `p${rand()}`;
    const expires = await declareQueue(`${prov}/soon`, taskcluster.fromNowJSON('1 hour'));
    await declareQueue(`${prov}/later`, taskcluster.fromNowJSON('3 days'));
    await withClockAt(q, new Date(Date.parse(expires) + 1000), async () => {
      await expectError(q.queue().getTaskQueue(`${prov}/soon`), 404, 'ResourceNotFound');
      const { items } = await allPages<any>((query) => q.queue().listTaskQueues(query), 'taskQueues', 1000);
      assert.deepEqual(items.map((t) => t.taskQueueId).filter((id) => id.startsWith(`${prov}/`)), [`${prov}/later`]);
      assert.deepEqual((await q.queue().listWorkerTypes(prov)).workerTypes.map((w: any) => w.workerType), ['later']);
    });
  });

  it('records the queue a worker polls with claimWork', async () => {
    const taskQueueId = `p${rand()}/polled`;
    assert.deepEqual(await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 }), { tasks: [] });
    // the activity write is off the claim's path; wait for it
    const deadline = Date.now() + 10_000;
    for (;;) {
      const got = await q.queue().getTaskQueue(taskQueueId).catch(() => undefined);
      if (got) break;
      assert.ok(Date.now() < deadline, 'task queue not recorded');
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  it('getTaskQueue takes the id encoded (as the client sends it) or with a literal slash', async () => {
    // a workerType must start with a letter
    const taskQueueId = `anon/w${rand()}`;
    await declareQueue(taskQueueId);
    const base = `${q.rootUrl}/api/queue/v1/task-queues`;
    for (const path of [encodeURIComponent(taskQueueId), taskQueueId]) {
      const res = await fetch(`${base}/${path}`);
      assert.equal(res.status, 200, path);
      assert.equal(((await res.json()) as any).taskQueueId, taskQueueId);
    }
    const bad = await fetch(`${base}/${taskQueueId}/extra`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as any).code, 'InvalidRequestArguments');
  });

  it('derives provisioners and worker types from task queues', async () => {
    const queue = q.queue();
    // `_` is a LIKE wildcard: p_x must not pick up paX's queues
    const tail = rand();
    const prov = `p_x${tail}`;
    const lookalike = `paX${tail}`;
    const e1 = await declareQueue(`${prov}/one`, taskcluster.fromNowJSON('2 days'));
    const e2 = await declareQueue(`${prov}/two`, taskcluster.fromNowJSON('4 days'));
    await declareQueue(`${lookalike}/three`);

    const p = await queue.getProvisioner(prov);
    assertSchema('v1/provisioner-response.json', p);
    assert.equal(p.provisionerId, prov);
    assert.equal(p.expires, e2 > e1 ? e2 : e1);
    assert.deepEqual(p.actions, []);
    await expectError(queue.getProvisioner(`none${rand()}`), 404, 'ResourceNotFound');

    const list = await queue.listProvisioners();
    assertSchema('v1/list-provisioners-response.json', list);
    const { items, pages } = await allPages<any>((query) => queue.listProvisioners(query), 'provisioners', 1);
    assert.ok(pages >= 2);
    const ids = items.map((x) => x.provisionerId);
    assert.deepEqual(ids, list.provisioners.map((x: any) => x.provisionerId));
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(ids.includes(prov) && ids.includes(lookalike));
    await expectError(queue.listProvisioners({ continuationToken: wrongShapeToken }), 400, 'InvalidRequestArguments');

    const types = await queue.listWorkerTypes(prov);
    assertSchema('v1/list-workertypes-response.json', types);
    assert.deepEqual(types.workerTypes.map((w: any) => [w.provisionerId, w.workerType, w.expires]), [
      [prov, 'one', e1],
      [prov, 'two', e2],
    ]);
    const paged = await allPages<any>((query) => queue.listWorkerTypes(prov, query), 'workerTypes', 1);
    assert.deepEqual(paged.items, types.workerTypes);
    assert.equal(paged.pages, 2);

    const wt = await queue.getWorkerType(prov, 'two');
    assertSchema('v1/workertype-response.json', wt);
    assert.deepEqual(wt, { ...types.workerTypes[1], actions: [] });
    await expectError(queue.getWorkerType(prov, 'three'), 404, 'ResourceNotFound');
  });

  it('answers declareProvisioner and declareWorkerType with a 400 saying they were removed', async () => {
    const err = await expectError(q.queue().declareProvisioner('prov', { description: 'x' }), 400, 'InputError');
    assert.match(err.message, /declareProvisioner was removed/);
    const err2 = await expectError(q.queue().declareWorkerType('prov', 'wt', { stability: 'stable' }), 400, 'InputError');
    assert.match(err2.message, /declareWorkerType was removed/);
    // the scopes are still those of the 87 reference: one per property
    const narrowed = q.queue({ authorizedScopes: ['queue:declare-worker-type:prov/wt#description'] });
    await expectError(narrowed.declareWorkerType('prov', 'wt', { stability: 'stable' }), 403, 'InsufficientScopes');
    await expectError(narrowed.declareWorkerType('prov', 'wt', { description: 'd' }), 400, 'InputError');
  });

  it('needs exactly the declared scopes', async () => {
    const prov = `p${rand()}`;
    const tq = `${prov}/wt`;
    await declareQueue(tq);
    const only = (...scopes: string[]) => q.queue({ authorizedScopes: scopes });
    const denied = (call: Promise<unknown>) => expectError(call, 403, 'InsufficientScopes');

    await only('queue:list-task-queues').listTaskQueues();
    await denied(only('queue:list-provisioners').listTaskQueues());
    await only(`queue:get-task-queue:${tq}`).getTaskQueue(tq);
    await denied(only(`queue:get-task-queue:${prov}/other`).getTaskQueue(tq));
    await only('queue:list-provisioners').listProvisioners();
    await denied(only('queue:list-task-queues').listProvisioners());
    await only(`queue:get-provisioner:${prov}`).getProvisioner(prov);
    await denied(only('queue:get-provisioner:other').getProvisioner(prov));
    await only(`queue:list-worker-types:${prov}`).listWorkerTypes(prov);
    await denied(only('queue:list-worker-types:other').listWorkerTypes(prov));
    await only(`queue:get-worker-type:${tq}`).getWorkerType(prov, 'wt');
    await denied(only(`queue:get-worker-type:${prov}/x`).getWorkerType(prov, 'wt'));
  });
});
