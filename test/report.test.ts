// reportCompleted / reportFailed / reportException: idempotent repeats, conflicts, the immutable
// exception reason, automatic retries (worker-shutdown → retry, intermittent-task → task-retry)
// while retries remain, and the messages each resolution commits.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { rejectsWith } from './harness/http.js';
import { invariantViolations } from './harness/invariants.js';
import { taskMessages } from './harness/messages.js';
import { outboxRows } from './harness/outbox.js';

describe('reporting a run', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1 });
  });
  after(async () => {
    await q?.stop();
  });

  /** Creates a task and claims run `runId` of it (claiming again after retries). */
  async function claimed(overrides: Record<string, unknown> = {}, taskQueueId = uniqueQueue()) {
    const taskId = slugid();
    await q.queue().createTask(taskId, taskDef({ taskQueueId, ...overrides }));
    return { taskId, taskQueueId, ...(await claimNext(taskQueueId)) };
  }
  async function claimNext(taskQueueId: string) {
    const { tasks } = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
    assert.equal(tasks.length, 1);
    return { claim: tasks[0], wq: q.queue({ credentials: tasks[0].credentials }) };
  }
  const groupResolved = async (taskGroupId: string) =>
    (await outboxRows(q.service.ctx.db, { exchange: 'task-group-resolved' })).filter((r) => r.body.taskGroupId === taskGroupId).length;

  for (const [method, state, exchange] of [
    ['reportCompleted', 'completed', 'task-completed'],
    ['reportFailed', 'failed', 'task-failed'],
  ] as const) {
    it(`${method} resolves a running run as ${state}, answers a repeat the same, and commits ${exchange} once`, async () => {
      const { taskId, claim, wq } = await claimed({ tags: { a: 'b' } });
      const { status } = await wq[method](taskId, 0);
      assert.equal(status.state, state);
      assert.equal(status.runs[0].state, state);
      assert.equal(status.runs[0].reasonResolved, state);
      assert.ok(status.runs[0].resolved);
      assert.equal(status.runs[0].workerId, 'w1');
      assert.equal(status.runs[0].started, claim.status.runs[0].started);
      const again = await wq[method](taskId, 0);
      assert.deepEqual(again.status, status);

      const msgs = await taskMessages(q.service.ctx.db, taskId);
      assert.deepEqual(msgs.map((m) => m.exchange), ['task-defined', 'task-pending', 'task-running', exchange]);
      const last = msgs[3]!.body;
      assert.equal(last.runId, 0);
      assert.equal(last.workerGroup, 'wg');
      assert.equal(last.workerId, 'w1');
      assert.deepEqual(last.status, status);
      assert.deepEqual(last.task, { tags: { a: 'b' } });
      assert.equal(await groupResolved(taskId), 1);
    });
  }

  it('refuses a different resolution of a resolved run with 409', async () => {
    const { taskId, wq } = await claimed();
    await wq.reportCompleted(taskId, 0);
    await rejectsWith(wq.reportFailed(taskId, 0), 409, 'RequestConflict');
    await rejectsWith(wq.reportException(taskId, 0, { reason: 'malformed-payload' }), 409, 'RequestConflict');
    const b = await claimed();
    await b.wq.reportFailed(b.taskId, 0);
    await rejectsWith(b.wq.reportCompleted(b.taskId, 0), 409, 'RequestConflict');
  });

  it('refuses to resolve a pending run with 409, changing nothing', async () => {
    const taskId = slugid();
    await q.queue().createTask(taskId, taskDef({ taskQueueId: uniqueQueue() }));
    await rejectsWith(q.queue().reportCompleted(taskId, 0), 409, 'RequestConflict', /pending/);
    await rejectsWith(q.queue().reportFailed(taskId, 0), 409, 'RequestConflict');
    await rejectsWith(q.queue().reportException(taskId, 0, { reason: 'internal-error' }), 409, 'RequestConflict');
    const { status } = await q.queue().status(taskId);
    assert.equal(status.state, 'pending');
    assert.deepEqual((await taskMessages(q.service.ctx.db, taskId)).map((m) => m.exchange), ['task-defined', 'task-pending']);
  });

  it('is a 404 for an unknown task or run', async () => {
    const { taskId, wq } = await claimed();
    await rejectsWith(q.queue().reportCompleted(slugid(), 0), 404, 'ResourceNotFound');
    await rejectsWith(q.queue().reportCompleted(taskId, 3), 404, 'ResourceNotFound');
    await wq.reportCompleted(taskId, 0);
  });

  describe('reportException', () => {
    for (const [reason, reasonCreated] of [['worker-shutdown', 'retry'], ['intermittent-task', 'task-retry']] as const) {
      it(`retries ${reason} while retries remain (${reasonCreated}), then resolves for good`, async () => {
        const taskQueueId = uniqueQueue();
        const { taskId, wq } = await claimed({ retries: 2 }, taskQueueId);
        const first = await wq.reportException(taskId, 0, { reason });
        assert.equal(first.status.state, 'pending');
        assert.equal(first.status.retriesLeft, 1);
        assert.equal(first.status.runs.length, 2);
        assert.equal(first.status.runs[0].state, 'exception');
        assert.equal(first.status.runs[0].reasonResolved, reason);
        assert.equal(first.status.runs[1].state, 'pending');
        assert.equal(first.status.runs[1].reasonCreated, reasonCreated);
        // a repeat answers the same and makes no second retry
        assert.deepEqual((await wq.reportException(taskId, 0, { reason })).status, first.status);
        // the reason is immutable
        await rejectsWith(wq.reportException(taskId, 0, { reason: 'malformed-payload' }), 409, 'RequestConflict');
        const msgs = await taskMessages(q.service.ctx.db, taskId);
        assert.deepEqual(msgs.map((m) => m.exchange).slice(3), ['task-exception', 'task-pending']);
        assert.equal(msgs[3]!.body.runId, 0);
        assert.equal(msgs[3]!.body.workerId, 'w1');
        assert.equal(msgs[4]!.body.runId, 1);
        assert.deepEqual(msgs[3]!.body.status, first.status);
        assert.deepEqual(msgs[4]!.body.status, first.status);
        assert.equal(await groupResolved(taskId), 0, 'a retried task does not resolve its group');

        const second = await claimNext(taskQueueId);
        assert.equal(second.claim.runId, 1);
        assert.equal((await second.wq.reportException(taskId, 1, { reason })).status.retriesLeft, 0);
        const third = await claimNext(taskQueueId);
        const final = await third.wq.reportException(taskId, 2, { reason });
        assert.equal(final.status.state, 'exception');
        assert.equal(final.status.runs.length, 3);
        assert.equal(final.status.retriesLeft, 0);
        assert.equal(await groupResolved(taskId), 1);
        assert.deepEqual((await taskMessages(q.service.ctx.db, taskId)).map((m) => m.exchange).slice(-1), ['task-exception']);
      });
    }

    for (const reason of ['malformed-payload', 'resource-unavailable', 'internal-error']) {
      it(`resolves ${reason} for good even with retries left; a repeat answers the same`, async () => {
        const { taskId, wq } = await claimed({ retries: 5 });
        const { status } = await wq.reportException(taskId, 0, { reason });
        assert.equal(status.state, 'exception');
        assert.equal(status.runs.length, 1);
        assert.equal(status.runs[0].reasonResolved, reason);
        assert.equal(status.retriesLeft, 5);
        assert.deepEqual((await wq.reportException(taskId, 0, { reason })).status, status);
        await rejectsWith(wq.reportException(taskId, 0, { reason: 'worker-shutdown' }), 409, 'RequestConflict');
        const msgs = await taskMessages(q.service.ctx.db, taskId);
        assert.deepEqual(msgs.map((m) => m.exchange).slice(3), ['task-exception']);
        assert.equal(await groupResolved(taskId), 1);
      });
    }

    it('with no retries configured, worker-shutdown is final', async () => {
      const { taskId, wq } = await claimed({ retries: 0 });
      const { status } = await wq.reportException(taskId, 0, { reason: 'worker-shutdown' });
      assert.equal(status.state, 'exception');
      assert.equal(status.runs.length, 1);
    });

    it('refuses reasons the worker may not give, and a missing body, with 400', async () => {
      const { taskId, wq } = await claimed();
      for (const body of [{ reason: 'canceled' }, { reason: 'claim-expired' }, { reason: 'deadline-exceeded' }, { reason: 'superseded' }, {}, { reason: 'worker-shutdown', extra: 1 }]) {
        await rejectsWith(wq.reportException(taskId, 0, body), 400, 'InputValidationError');
      }
      assert.equal((await q.queue().status(taskId)).status.state, 'running');
    });
  });

  it('needs queue:resolve-task:<taskId>/<runId>', async () => {
    const { taskId } = await claimed();
    for (const m of ['reportCompleted', 'reportFailed'] as const) {
      await rejectsWith(q.queue({ authorizedScopes: [`queue:resolve-task:${taskId}/1`, `queue:reclaim-task:${taskId}/0`] })[m](taskId, 0), 403, 'InsufficientScopes');
    }
    await rejectsWith(q.queue({ authorizedScopes: [] }).reportException(taskId, 0, { reason: 'internal-error' }), 403, 'InsufficientScopes');
    const { status } = await q.queue({ authorizedScopes: [`queue:resolve-task:${taskId}/0`] }).reportFailed(taskId, 0);
    assert.equal(status.state, 'failed');
    assert.deepEqual(await invariantViolations(q.service.ctx.db), []);
  });
});
