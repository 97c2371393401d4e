// Task group endpoints: getTaskGroup, listTaskGroup (paging), sealTaskGroup, cancelTaskGroup.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { claimAndResolve, cloneUnscheduled, create, messagesByTask, states } from './harness/graph.js';
import { outboxRows } from './harness/outbox.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';

describe('task groups', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue();
  });
  after(async () => {
    await q?.stop();
  });
  const db = () => q.service.ctx.db;
  const groupEvents = async (exchange: string, taskGroupId: string) =>
    (await outboxRows(db(), { exchange })).filter((r) => r.routing_key.split('.')[1] === taskGroupId);

  it('gets a group and lists its tasks a page at a time, ordered by taskId', async () => {
    const taskGroupId = slugid();
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await create(q, { taskGroupId, schedulerId: 'sched' }));
    ids.sort();
    const g = await q.queue().getTaskGroup(taskGroupId);
    assert.equal(g.taskGroupId, taskGroupId);
    assert.equal(g.schedulerId, 'sched');
    assert.equal(g.sealed, undefined);
    assert.ok(Date.parse(g.expires) > Date.now());

    const seen: string[] = [];
    let continuationToken: string | undefined;
    do {
      const page = await q.queue().listTaskGroup(taskGroupId, { limit: 2, ...(continuationToken ? { continuationToken } : {}) });
      assert.equal(page.taskGroupId, taskGroupId);
      assert.equal(page.schedulerId, 'sched');
      for (const t of page.tasks) {
        assert.equal(t.task.taskGroupId, taskGroupId);
        assert.equal(t.status.state, 'pending');
        seen.push(t.status.taskId);
      }
      continuationToken = page.continuationToken;
    } while (continuationToken);
    assert.deepEqual(seen, ids);
    const all = await q.queue().listTaskGroup(taskGroupId);
    assert.equal(all.tasks.length, 5);
    assert.equal(all.continuationToken, undefined);

    await assert.rejects(q.queue().getTaskGroup(slugid()), (err: any) => err.statusCode === 404 && err.code === 'ResourceNotFound');
    await assert.rejects(q.queue().listTaskGroup(slugid()), (err: any) => err.statusCode === 404);
    await assert.rejects(q.queue().listTaskGroup(taskGroupId, { continuationToken: 'e30' }), (err: any) => err.statusCode === 400);
    const other = q.queue({ authorizedScopes: [`queue:list-task-group:${slugid()}`] });
    await assert.rejects(other.getTaskGroup(taskGroupId), (err: any) => err.statusCode === 403);
    await assert.rejects(other.listTaskGroup(taskGroupId), (err: any) => err.statusCode === 403);
    const allowed = q.queue({ authorizedScopes: [`queue:list-task-group:${taskGroupId}`] });
    assert.equal((await allowed.getTaskGroup(taskGroupId)).taskGroupId, taskGroupId);
  });

  it('seals a group: task-group-sealed once, createTask into it 409, an identical repeat still 200', async () => {
    const taskGroupId = slugid();
    const first = slugid();
    const def = taskDef({ taskGroupId, schedulerId: 'sched' });
    await q.queue().createTask(first, def);

    const denied = q.queue({ authorizedScopes: [`queue:seal-task-group:other/${taskGroupId}`] });
    await assert.rejects(denied.sealTaskGroup(taskGroupId), (err: any) => err.statusCode === 403);
    const sealer = q.queue({ authorizedScopes: [`queue:seal-task-group:sched/${taskGroupId}`] });
    const sealed = await sealer.sealTaskGroup(taskGroupId);
    assert.ok(sealed.sealed);
    const again = await sealer.sealTaskGroup(taskGroupId);
    assert.equal(again.sealed, sealed.sealed, 'the first seal time stays');
    assert.equal((await q.queue().getTaskGroup(taskGroupId)).sealed, sealed.sealed);

    const events = await groupEvents('task-group-sealed', taskGroupId);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.routing_key, `primary.${taskGroupId}.sched._`);
    assert.deepEqual(events[0]!.body, { version: 1, taskGroupId, schedulerId: 'sched', expires: sealed.expires, sealed: sealed.sealed });

    await assert.rejects(q.queue().createTask(slugid(), taskDef({ taskGroupId, schedulerId: 'sched' })), (err: any) => {
      assert.equal(err.statusCode, 409);
      assert.match(err.message, /sealed/);
      return true;
    });
    // the idempotent repeat of a task created before the seal is still fine
    assert.equal((await q.queue().createTask(first, def)).status.taskId, first);
    await assert.rejects(q.queue().sealTaskGroup(slugid()), (err: any) => err.statusCode === 404);
  });

  it('cancels every unresolved task of a sealed group, each with its task-exception', async () => {
    const taskGroupId = slugid();
    const taskQueueId = uniqueQueue();
    const common = { taskGroupId, schedulerId: 'sched', taskQueueId };
    const done = await create(q, common);
    await claimAndResolve(q, taskQueueId, 'completed', { taskId: done });
    const running = await create(q, common);
    const claim = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
    assert.equal(claim.tasks[0].status.taskId, running);
    const pending = await create(q, common);
    const blocked = await create(q, { ...common, dependencies: [pending] });

    await assert.rejects(q.queue().cancelTaskGroup(taskGroupId), (err: any) => {
      assert.equal(err.statusCode, 409);
      assert.match(err.message, /not sealed/);
      return true;
    });
    await q.queue().sealTaskGroup(taskGroupId);
    const denied = q.queue({ authorizedScopes: [`queue:cancel-task-group:other/${taskGroupId}`] });
    await assert.rejects(denied.cancelTaskGroup(taskGroupId), (err: any) => err.statusCode === 403);

    const canceller = q.queue({ authorizedScopes: [`queue:cancel-task-group:sched/${taskGroupId}`] });
    const res = await canceller.cancelTaskGroup(taskGroupId);
    assert.equal(res.taskGroupId, taskGroupId);
    assert.equal(res.taskGroupSize, 4);
    assert.equal(res.cancelledCount, 3);
    assert.deepEqual([...res.taskIds].sort(), [running, pending, blocked].sort());

    const s = await states(db(), [done, running, pending, blocked]);
    assert.deepEqual([s.get(done), s.get(running), s.get(pending), s.get(blocked)], ['completed', 'exception', 'exception', 'exception']);
    const exceptions = await messagesByTask(db(), 'task-exception');
    for (const id of [running, pending, blocked]) {
      assert.equal(exceptions.get(id)?.length, 1, `one task-exception for ${id}`);
      const st = exceptions.get(id)![0].status;
      assert.equal(st.runs[st.runs.length - 1].reasonResolved, 'canceled');
    }
    assert.equal(exceptions.get(running)![0].workerId, 'w');
    assert.equal((await q.queue().status(blocked)).status.runs[0].reasonCreated, 'exception');
    // the running worker learns it from reclaim
    const worker = q.queue({ credentials: claim.tasks[0].credentials });
    await assert.rejects(worker.reclaimTask(running, 0), (err: any) => err.statusCode === 409);

    // the group resolved with the last cancel; a repeat changes nothing and says nothing
    assert.equal((await groupEvents('task-group-resolved', taskGroupId)).length, 2, 'once after done completed, once after the cancel');
    const repeat = await canceller.cancelTaskGroup(taskGroupId);
    assert.deepEqual(repeat, { taskGroupId, taskGroupSize: 4, cancelledCount: 0, taskIds: [] });
    assert.equal((await messagesByTask(db(), 'task-exception')).get(pending)!.length, 1);
    await assert.rejects(q.queue().cancelTaskGroup(slugid()), (err: any) => err.statusCode === 404);
  });

  it('cancels a dependent that an earlier cancel in the same batch just unblocked', async () => {
    const taskGroupId = slugid();
    // ids ordered A < B: the batch cancels `a` first, which schedules its all-resolved dependent `b`
    const a = `A${slugid().slice(1)}`;
    const b = `B${slugid().slice(1)}`;
    await create(q, { taskGroupId, taskQueueId: uniqueQueue() }, a);
    await create(q, { taskGroupId, taskQueueId: uniqueQueue(), dependencies: [a], requires: 'all-resolved' }, b);
    await q.queue().sealTaskGroup(taskGroupId);
    const res = await q.queue().cancelTaskGroup(taskGroupId);
    assert.equal(res.cancelledCount, 2);
    const { status } = await q.queue().status(b);
    assert.deepEqual(status.runs.map((r: any) => [r.reasonCreated, r.state, r.reasonResolved]), [['scheduled', 'exception', 'canceled']]);
  });

  it('cancels a group of 450 tasks in bounded batches', async () => {
    const taskGroupId = slugid();
    const root = await create(q, { taskGroupId, taskQueueId: uniqueQueue() });
    const template = await create(q, { taskGroupId, dependencies: [root], taskQueueId: uniqueQueue() });
    const ids = Array.from({ length: 448 }, () => slugid());
    await cloneUnscheduled(db(), template, ids.map((taskId) => ({ taskId, dependencies: [root] })));
    await q.queue().sealTaskGroup(taskGroupId);
    const res = await q.queue().cancelTaskGroup(taskGroupId);
    assert.equal(res.taskGroupSize, 450);
    assert.equal(res.cancelledCount, 450);
    const s = await states(db(), [root, template, ...ids]);
    assert.ok([...s.values()].every((v) => v === 'exception'));
    assert.equal((await groupEvents('task-group-resolved', taskGroupId)).length, 1);
  });
});
