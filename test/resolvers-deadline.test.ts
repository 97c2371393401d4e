// Deadlines of a few seconds: at its deadline an unresolved task (unscheduled, pending or running)
// becomes exception/deadline-exceeded with no retry, and is immutable afterwards.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { claimAndResolve, create, messagesByTask, states, until } from './harness/graph.js';
import { outboxRows } from './harness/outbox.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, uniqueQueue } from './harness/tasks.js';

describe('deadlines', () => {
  let q: TestQueue;
  const taskGroupId = slugid();
  const queues = { pending: uniqueQueue(), running: uniqueQueue(), done: uniqueQueue(), failing: uniqueQueue(), other: uniqueQueue() };
  const ids: Record<string, string> = {};
  let deadline: Date;
  let worker: any;

  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1 });
  });
  after(async () => {
    await q?.stop();
  });
  const db = () => q.service.ctx.db;

  it('resolves unscheduled, pending and running tasks as deadline-exceeded at their deadline', async () => {
    deadline = new Date(Date.now() + 3000);
    const common = { taskGroupId, deadline: deadline.toJSON() };
    const far = { taskGroupId, taskQueueId: queues.other };
    ids.pending = await create(q, { ...common, taskQueueId: queues.pending });
    ids.running = await create(q, { ...common, taskQueueId: queues.running });
    ids.done = await create(q, { ...common, taskQueueId: queues.done });
    // failing fails; its all-completed dependent is stuck until its deadline, which then unblocks
    // the all-resolved task after it
    ids.failing = await create(q, { ...far, taskQueueId: queues.failing });
    ids.stuck = await create(q, { ...common, taskQueueId: queues.other, dependencies: [ids.failing] });
    ids.next = await create(q, { ...far, dependencies: [ids.stuck], requires: 'all-resolved' });

    const claim = await q.queue().claimWork(queues.running, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
    worker = q.queue({ credentials: claim.tasks[0].credentials });
    await claimAndResolve(q, queues.done, 'completed', { taskId: ids.done });
    await claimAndResolve(q, queues.failing, 'failed', { taskId: ids.failing });
    assert.equal((await states(db(), [ids.stuck])).get(ids.stuck), 'unscheduled');

    const watched = [ids.pending, ids.running, ids.stuck];
    await until('deadline-exceeded', async () => [...(await states(db(), watched)).values()].every((s) => s === 'exception'), 10_000);
    for (const id of watched) {
      const { status } = await q.queue().status(id);
      const run = status.runs[status.runs.length - 1];
      assert.equal(status.runs.length, 1, 'no retry');
      assert.equal(run.reasonResolved, 'deadline-exceeded');
      const lag = Date.parse(run.resolved) - deadline.getTime();
      assert.ok(lag >= 0 && lag < 2000, `resolved ${lag} ms after the deadline`);
    }
    assert.equal((await q.queue().status(ids.stuck)).status.runs[0].reasonCreated, 'exception');
    assert.equal((await q.queue().status(ids.done)).status.state, 'completed');

    const exceptions = await messagesByTask(db(), 'task-exception');
    for (const id of watched) assert.equal(exceptions.get(id)?.length, 1);
    assert.equal(exceptions.get(ids.running)![0].workerId, 'w');
    assert.equal(exceptions.get(ids.done), undefined);
    // nothing claimable is left behind
    assert.equal((await q.queue().pendingTasks(queues.pending)).pendingTasks, 0);
    // the deadline of `stuck` resolved it, which its all-resolved dependent was waiting for
    assert.equal((await states(db(), [ids.next])).get(ids.next), 'pending');
  });

  it('leaves the task immutable: claim, reclaim, report, rerun, cancel and schedule', async () => {
    const none = await q.queue().claimWork(queues.pending, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
    assert.equal(none.tasks.length, 0);
    await assert.rejects(worker.reclaimTask(ids.running, 0), (err: any) => err.statusCode === 409);
    await assert.rejects(worker.reportCompleted(ids.running, 0), (err: any) => err.statusCode === 409);
    for (const id of [ids.pending, ids.done, ids.stuck]) {
      await assert.rejects(q.queue().rerunTask(id), (err: any) => err.statusCode === 409 && /deadline/.test(err.message));
      await assert.rejects(q.queue().cancelTask(id), (err: any) => err.statusCode === 409);
      await assert.rejects(q.queue().scheduleTask(id), (err: any) => err.statusCode === 409);
    }
    // nothing more was announced for them
    const rows = await outboxRows(db(), { taskId: ids.done });
    assert.deepEqual(rows.map((r) => r.exchange.split('/').pop()), ['task-defined', 'task-pending', 'task-running', 'task-completed']);
  });

  it('a task pending at its deadline is not handed to a worker even before the loop runs', async () => {
    const quiet = await startTestQueue({ enableLoops: false, claimWorkTimeoutSec: 1 });
    try {
      const taskQueueId = uniqueQueue();
      const soon = new Date(Date.now() + 500);
      await create(quiet, { taskQueueId, deadline: soon.toJSON() });
      await until('past the deadline', () => Date.now() > soon.getTime() + 10);
      const res = await quiet.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
      assert.equal(res.tasks.length, 0);
    } finally {
      await quiet.stop();
    }
  });
});
