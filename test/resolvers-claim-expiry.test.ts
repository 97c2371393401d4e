// Claim expiry with a 2-second claim timeout: a run whose takenUntil passes becomes
// exception/claim-expired, retried (reasonCreated `retry`) while retries remain; task-exception
// then task-pending; the old worker's late report and reclaim get 409.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create, messagesByTask, until } from './harness/graph.js';
import { outboxRows } from './harness/outbox.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, uniqueQueue } from './harness/tasks.js';

describe('claim expiry', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ taskClaimTimeoutSec: 2 });
  });
  after(async () => {
    await q?.stop();
  });
  const claim = async (taskQueueId: string) => {
    const res = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
    assert.equal(res.tasks.length, 1);
    return res.tasks[0];
  };
  const lastRun = async (taskId: string) => {
    const { status } = await q.queue().status(taskId);
    return status.runs[status.runs.length - 1];
  };

  it('expires an unreclaimed claim, retries it, and refuses the old worker with 409', async () => {
    const taskQueueId = uniqueQueue();
    const taskGroupId = slugid();
    const taskId = await create(q, { taskQueueId, taskGroupId, retries: 1 });
    const first = await claim(taskQueueId);
    const takenUntil = Date.parse(first.takenUntil);
    assert.ok(takenUntil - Date.now() <= 2000 + 1000);

    await until('run 0 claim-expired', async () => (await q.queue().status(taskId)).status.runs.length === 2);
    const { status } = await q.queue().status(taskId);
    assert.equal(status.state, 'pending');
    assert.equal(status.retriesLeft, 0);
    assert.deepEqual(
      [status.runs[0].state, status.runs[0].reasonResolved, status.runs[1].state, status.runs[1].reasonCreated],
      ['exception', 'claim-expired', 'pending', 'retry'],
    );
    const lag = Date.parse(status.runs[0].resolved) - takenUntil;
    assert.ok(lag >= 0 && lag < 2000, `resolved ${lag} ms after takenUntil`);

    // task-exception for run 0, then task-pending for run 1, both reporting the retried status
    const rows = (await outboxRows(q.service.ctx.db, { taskId })).map((r) => r.exchange.split('/').pop());
    assert.deepEqual(rows.slice(-2), ['task-exception', 'task-pending']);
    const exception = (await messagesByTask(q.service.ctx.db, 'task-exception')).get(taskId)!;
    assert.equal(exception.length, 1);
    assert.equal(exception[0].runId, 0);
    assert.equal(exception[0].workerId, 'w');
    assert.equal((await messagesByTask(q.service.ctx.db, 'task-pending')).get(taskId)![1].runId, 1);
    // the group is not resolved while its task waits for the retry
    const groupRows = (await outboxRows(q.service.ctx.db, { exchange: 'task-group-resolved' })).filter((r) => r.routing_key.includes(taskGroupId));
    assert.equal(groupRows.length, 0);

    const oldWorker = q.queue({ credentials: first.credentials });
    await assert.rejects(oldWorker.reportCompleted(taskId, 0), (err: any) => err.statusCode === 409);
    await assert.rejects(oldWorker.reclaimTask(taskId, 0), (err: any) => err.statusCode === 409);

    // retries exhausted: the second expiry resolves the task
    const second = await claim(taskQueueId);
    assert.equal(second.runId, 1);
    await until('run 1 claim-expired', async () => (await lastRun(taskId)).state === 'exception');
    const final = await q.queue().status(taskId);
    assert.equal(final.status.runs.length, 2);
    assert.equal(final.status.runs[1].reasonResolved, 'claim-expired');
    await until('the group resolved', async () =>
      (await outboxRows(q.service.ctx.db, { exchange: 'task-group-resolved' })).some((r) => r.routing_key.includes(taskGroupId)),
    );
  });

  it('leaves a reclaimed run alone', async () => {
    const taskQueueId = uniqueQueue();
    const taskId = await create(q, { taskQueueId });
    const c = await claim(taskQueueId);
    const worker = q.queue({ credentials: c.credentials });
    await until('halfway through the claim', () => Date.now() > Date.parse(c.takenUntil) - 1000);
    const reclaimed = await worker.reclaimTask(taskId, 0);
    assert.ok(Date.parse(reclaimed.takenUntil) > Date.parse(c.takenUntil));
    await until('past the first takenUntil', () => Date.now() > Date.parse(c.takenUntil) + 300);
    assert.equal((await lastRun(taskId)).state, 'running');
    await q.queue({ credentials: reclaimed.credentials }).reportCompleted(taskId, 0);
    assert.equal((await lastRun(taskId)).state, 'completed');
  });

  it('a run still claimed at its deadline becomes deadline-exceeded, with no retry', async () => {
    const taskQueueId = uniqueQueue();
    const taskId = await create(q, { taskQueueId, deadline: new Date(Date.now() + 1500).toJSON() });
    await claim(taskQueueId);
    await until('resolved', async () => (await lastRun(taskId)).state === 'exception');
    const { status } = await q.queue().status(taskId);
    assert.equal(status.runs.length, 1);
    assert.equal(status.runs[0].reasonResolved, 'deadline-exceeded');
  });
});
