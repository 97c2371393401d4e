// Concurrency: many workers claiming at once, and two service instances on one database. Every run
// is handed out exactly once and the state-machine invariants hold in the database afterwards.
// (Transitions racing on the same tasks: races.test.ts.)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { startQueue, type QueueService } from '../services/queue/src/app.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { outboxRows } from './harness/outbox.js';
import { waitFor } from './harness/wait.js';
import { assertClaimedOnce, createMany, drain } from './harness/concurrency.js';

describe('concurrency', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1 });
  });
  after(async () => {
    await q?.stop();
  });

  it('20 workers claiming at once take each of 200 tasks exactly once', async () => {
    const taskQueueId = uniqueQueue();
    const taskIds = await createMany(q, 200, { taskQueueId });
    const claims = await Promise.all(Array.from({ length: 20 }, (_, i) => drain(q.queue(), taskQueueId, `w${i}`, 1 + (i % 5))));
    await assertClaimedOnce(q, claims, taskIds);
    const running = await outboxRows(q.service.ctx.db, { exchange: 'task-running' });
    const ours = running.filter((r) => taskIds.includes(r.body.status.taskId));
    assert.equal(ours.length, 200);
  });

  describe('two service instances on one database', () => {
    let other: QueueService;
    before(async () => {
      other = await startQueue({ config: { ...q.config, port: 0 }, loops: false });
    });
    after(async () => {
      await other?.stop();
    });
    const otherQueue = () => new taskcluster.Queue({ rootUrl: other.url, credentials: q.credentials, retries: 0 });

    it('never hand out the same run', async () => {
      const taskQueueId = uniqueQueue();
      const taskIds = await createMany(q, 60, { taskQueueId });
      const claims = await Promise.all(
        Array.from({ length: 12 }, (_, i) => drain(i % 2 ? otherQueue() : q.queue(), taskQueueId, `w${i}`, 1 + (i % 4))),
      );
      await assertClaimedOnce(q, claims, taskIds);
    });

    it("wake each other's long-polls", async () => {
      const taskQueueId = uniqueQueue();
      const claiming = otherQueue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
      await waitFor('a long-poll in the other instance', () => other.ctx.waiters.inLine(taskQueueId) > 0, { everyMs: 2 });
      const taskId = slugid();
      const before = Date.now();
      await q.queue().createTask(taskId, taskDef({ taskQueueId }));
      const { tasks } = await claiming;
      assert.equal(tasks[0].status.taskId, taskId);
      assert.ok(Date.now() - before < 1000, `hand-off across instances took ${Date.now() - before} ms`);
    });
  });
});
