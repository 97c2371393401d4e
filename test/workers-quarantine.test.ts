// A quarantined worker gets no work from claimWork (or claimTask); lifting the quarantine gives it
// work again. The long-poll is shortened to 1 s, since a quarantined worker waits it out.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { withClockAt } from './harness/listing.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';

describe('worker quarantine and claimWork', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1 });
  });
  after(async () => {
    await q?.stop();
  });

  const split = (taskQueueId: string) => taskQueueId.split('/') as [string, string];

  async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('refuses work while quarantined and hands it out once the quarantine is lifted', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const [prov, wt] = split(taskQueueId);
    const who = { workerGroup: 'wg', workerId: 'w1' };

    // the worker exists because it has claimed before
    await queue.createTask(slugid(), taskDef({ taskQueueId }));
    assert.equal((await queue.claimWork(taskQueueId, { ...who, tasks: 1 })).tasks.length, 1);

    await queue.quarantineWorker(prov, wt, who.workerGroup, who.workerId, { quarantineUntil: taskcluster.fromNowJSON('1 hour') });
    const taskId = slugid();
    await queue.createTask(taskId, taskDef({ taskQueueId }));
    const started = Date.now();
    assert.deepEqual(await queue.claimWork(taskQueueId, { ...who, tasks: 1 }), { tasks: [] });
    // it waits out the long-poll like an idle worker, learning nothing
    assert.ok(Date.now() - started >= 900, `answered after ${Date.now() - started} ms`);
    assert.equal((await queue.status(taskId)).status.state, 'pending');
    // the deprecated claimTask refuses it too
    assert.deepEqual(await queue.claimTask(taskId, 0, who), {});
    assert.equal((await queue.status(taskId)).status.state, 'pending');
    // other workers are not affected
    const other = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w2', tasks: 1 });
    assert.equal(other.tasks[0].status.taskId, taskId);

    const next = slugid();
    await queue.createTask(next, taskDef({ taskQueueId }));
    await queue.quarantineWorker(prov, wt, who.workerGroup, who.workerId, { quarantineUntil: new Date(Date.now() - 1000).toISOString() });
    const claim = await queue.claimWork(taskQueueId, { ...who, tasks: 1 });
    assert.equal(claim.tasks.length, 1);
    assert.equal(claim.tasks[0].status.taskId, next);
  });

  it('a worker that has only polled can be quarantined', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const [prov, wt] = split(taskQueueId);
    assert.deepEqual(await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'idle', tasks: 1 }), { tasks: [] });
    // recording the poll is off the claim's path; wait for it
    await waitFor('the idle worker to be recorded', () => queue.getWorker(prov, wt, 'wg', 'idle').catch(() => undefined));
    await queue.quarantineWorker(prov, wt, 'wg', 'idle', { quarantineUntil: taskcluster.fromNowJSON('1 hour') });
    await queue.createTask(slugid(), taskDef({ taskQueueId }));
    assert.deepEqual(await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'idle', tasks: 1 }), { tasks: [] });
    assert.equal((await queue.taskQueueCounts(taskQueueId)).pendingTasks, 1);
  });

  it('a quarantine ends on its own at quarantineUntil', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const [prov, wt] = split(taskQueueId);
    await queue.declareWorker(prov, wt, 'wg', 'w1', { expires: taskcluster.fromNowJSON('1 day') });
    const until = new Date(Date.now() + 3600_000);
    await queue.quarantineWorker(prov, wt, 'wg', 'w1', { quarantineUntil: until.toISOString() });
    await queue.createTask(slugid(), taskDef({ taskQueueId }));
    assert.deepEqual(await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 }), { tasks: [] });

    await withClockAt(q, new Date(until.getTime() + 1000), async () => {
      assert.equal((await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 })).tasks.length, 1);
    });
  });
});
