// reclaimTask: a running run's claim is extended with fresh credentials; once the run is no
// longer running (cancelled, resolved, retried) or the task is past its deadline the worker gets
// a 409 and knows to stop.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { rejectsWith } from './harness/http.js';
import { resetClock, shiftClock } from './harness/clock.js';
import { invariantViolations } from './harness/invariants.js';
import { taskExchanges } from './harness/messages.js';

describe('reclaimTask', () => {
  let q: TestQueue;
  before(async () => {
    // no loops: the clock is moved here, and the resolvers must not act on it
    q = await startTestQueue({ claimWorkTimeoutSec: 1, taskClaimTimeoutSec: 600, enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });

  async function claimed(overrides: Record<string, unknown> = {}) {
    const taskQueueId = uniqueQueue();
    const taskId = slugid();
    await q.queue().createTask(taskId, taskDef({ taskQueueId, ...overrides }));
    const { tasks } = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
    assert.equal(tasks.length, 1);
    return { taskId, claim: tasks[0], wq: q.queue({ credentials: tasks[0].credentials }) };
  }

  it('extends takenUntil and hands out new credentials, publishing nothing', async () => {
    const { taskId, claim, wq } = await claimed({ scopes: ['secrets:get:x'] });
    shiftClock(q, 60_000);
    try {
      const r = await wq.reclaimTask(taskId, 0);
      assert.deepEqual(Object.keys(r).sort(), ['credentials', 'runId', 'status', 'takenUntil', 'workerGroup', 'workerId']);
      assert.equal(r.runId, 0);
      assert.equal(r.workerGroup, 'wg');
      assert.equal(r.workerId, 'w1');
      assert.equal(r.status.state, 'running');
      const until = new Date(r.takenUntil).getTime();
      assert.ok(until >= new Date(claim.takenUntil).getTime() + 59_000, `${r.takenUntil} vs ${claim.takenUntil}`);
      assert.equal(new Date(r.status.runs[0].takenUntil).getTime(), until);
      assert.notEqual(r.credentials.certificate, claim.credentials.certificate);
      assert.equal(r.credentials.clientId, `task-client/${taskId}/0/on/wg/w1/until/${Math.floor(until / 1000)}`);
      const cert = JSON.parse(r.credentials.certificate);
      assert.equal(cert.expiry, until);
      assert.ok(cert.scopes.includes('secrets:get:x'));
      const row = await q.service.ctx.db.selectFrom('runs').selectAll().where('task_id', '=', taskId).executeTakeFirstOrThrow();
      assert.equal(new Date(row.taken_until!).getTime(), until);
      // the new credentials work, and so do the old ones until they expire
      await q.queue({ credentials: r.credentials }).reclaimTask(taskId, 0);
      await wq.reclaimTask(taskId, 0);
    } finally {
      resetClock(q);
    }
    assert.deepEqual(await taskExchanges(q.service.ctx.db, taskId), ['task-defined', 'task-pending', 'task-running']);
  });

  it('is a 409 once the task was cancelled: the worker learns it should stop', async () => {
    const { taskId, wq } = await claimed();
    await q.queue().cancelTask(taskId);
    await rejectsWith(wq.reclaimTask(taskId, 0), 409, 'RequestConflict', /exception/);
  });

  it('is a 409 once the run is resolved', async () => {
    for (const resolve of [
      (wq: any, id: string) => wq.reportCompleted(id, 0),
      (wq: any, id: string) => wq.reportFailed(id, 0),
      (wq: any, id: string) => wq.reportException(id, 0, { reason: 'malformed-payload' }),
    ]) {
      const { taskId, wq } = await claimed();
      await resolve(wq, taskId);
      await rejectsWith(wq.reclaimTask(taskId, 0), 409, 'RequestConflict');
    }
  });

  it('is a 409 for a run that was retried (it is no longer the latest)', async () => {
    const { taskId, wq } = await claimed();
    await wq.reportException(taskId, 0, { reason: 'worker-shutdown' });
    await rejectsWith(wq.reclaimTask(taskId, 0), 409, 'RequestConflict');
  });

  it('is a 409 past the deadline', async () => {
    const { taskId, wq } = await claimed({ deadline: new Date(Date.now() + 120_000).toISOString() });
    shiftClock(q, 180_000);
    try {
      await rejectsWith(wq.reclaimTask(taskId, 0), 409, 'RequestConflict', /deadline/);
    } finally {
      resetClock(q);
    }
    assert.equal((await q.queue().status(taskId)).status.state, 'running');
  });

  it('is a 404 for an unknown task or run, a 409 for a pending run, a 400 for a bad runId', async () => {
    const { taskId } = await claimed();
    await rejectsWith(q.queue().reclaimTask(slugid(), 0), 404, 'ResourceNotFound');
    await rejectsWith(q.queue().reclaimTask(taskId, 1), 404, 'ResourceNotFound');
    await rejectsWith(q.queue().reclaimTask(taskId, 'x'), 400, 'InvalidRequestArguments');
    const pending = slugid();
    await q.queue().createTask(pending, taskDef({ taskQueueId: uniqueQueue() }));
    await rejectsWith(q.queue().reclaimTask(pending, 0), 409, 'RequestConflict');
  });

  it('needs queue:reclaim-task:<taskId>/<runId>', async () => {
    const { taskId } = await claimed();
    await rejectsWith(q.queue({ authorizedScopes: [`queue:reclaim-task:${taskId}/1`] }).reclaimTask(taskId, 0), 403, 'InsufficientScopes');
    await rejectsWith(q.queue({ authorizedScopes: [`queue:resolve-task:${taskId}/0`] }).reclaimTask(taskId, 0), 403, 'InsufficientScopes');
    await q.queue({ authorizedScopes: [`queue:reclaim-task:${taskId}/0`] }).reclaimTask(taskId, 0);
    assert.deepEqual(await invariantViolations(q.service.ctx.db), []);
  });
});
