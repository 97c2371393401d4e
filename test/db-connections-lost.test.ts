// The database drops connections of the service (a PostgreSQL restart, a failover, an operator's
// pg_terminate_backend): idle ones, and one in the middle of a shared transaction's statement. The
// service answers the next calls on fresh connections, re-runs the calls of the failed batch, and
// leaves nothing half-done.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { invariantViolations } from './harness/invariants.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { waitFor } from './harness/wait.js';

describe('database connections lost', () => {
  let q: TestQueue;
  let admin: pg.Client;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 5 });
    admin = new pg.Client({ connectionString: q.database.url });
    await admin.connect();
  });
  after(async () => {
    await admin?.end();
    await q?.stop();
  });

  /** Terminates every other backend of the service's database; resolves to how many. */
  const dropConnections = async () =>
    (await admin.query(`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid()`)).rows[0].n as number;

  const lifecycle = async (taskQueueId: string) => {
    const taskId = slugid();
    await q.queue().createTask(taskId, taskDef({ taskQueueId }));
    const claim = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
    assert.equal(claim.tasks.length, 1);
    const c = claim.tasks[0];
    const done = await q.queue({ credentials: c.credentials }).reportCompleted(taskId, c.runId);
    assert.equal(done.status.state, 'completed');
    return taskId;
  };

  it('serves the next calls after its idle connections were dropped', async () => {
    const taskQueueId = uniqueQueue();
    await lifecycle(taskQueueId);
    assert.ok((await dropConnections()) > 0);
    // the pool notices dead idle connections as they report their termination; a call may still
    // meet one that has not, and then fails alone: a client's retry (taskcluster-client's default)
    // gets a fresh connection
    const queue = q.queue({ retries: 3 } as never);
    const taskId = slugid();
    await queue.createTask(taskId, taskDef({ taskQueueId }));
    const claim = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
    assert.deepEqual(claim.tasks.map((c: any) => c.status.taskId), [taskId]);
    const done = await q.queue({ credentials: claim.tasks[0].credentials, retries: 3 } as never).reportCompleted(taskId, 0);
    assert.equal(done.status.state, 'completed');
    assert.deepEqual(await invariantViolations(q.service.ctx.db), []);
  });

  it('reruns the calls of a shared transaction whose connection died mid-statement, one at a time', async () => {
    const taskQueueId = uniqueQueue();
    const ids = Array.from({ length: 20 }, () => slugid());
    // the batch statement waits for a lock the test holds; its backend is terminated while it waits
    const locker = new pg.Client({ connectionString: q.database.url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE pending IN SHARE MODE');
    const creating = Promise.allSettled(ids.map((taskId) => q.queue().createTask(taskId, taskDef({ taskQueueId }))));
    const waiting = async () =>
      (await admin.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows;
    await waitFor('a batch waiting for the lock', async () => (await waiting()).length > 0);
    const killed = (await admin.query(`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0].n;
    assert.ok(killed > 0);
    await locker.query('COMMIT');
    await locker.end();
    const created = await creating;
    // No retries on the client. The calls of a batch that fails as a whole are re-run one at a
    // time; a call whose own statement lost its connection gets a 503, never a 500, and
    // taskcluster-client retries it (a 5xx) by default
    const failed = created.flatMap((c) => (c.status === 'rejected' ? [c.reason] : []));
    for (const err of failed) {
      assert.equal(err.statusCode, 503, err.message);
      assert.equal(err.code, 'ServiceUnavailable');
    }
    assert.ok(failed.length < ids.length, 'the re-run served the rest');
    assert.deepEqual(await invariantViolations(q.service.ctx.db), []);
    // the failed ones again, as a client's retry would
    const retried = ids.filter((_, i) => created[i]!.status === 'rejected');
    for (const taskId of retried) await q.queue().createTask(taskId, taskDef({ taskQueueId }));
    let claimed = 0;
    while (claimed < ids.length) {
      const claim = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w', tasks: 32 });
      assert.ok(claim.tasks.length > 0, `claimed ${claimed} of ${ids.length}`);
      claimed += claim.tasks.length;
    }
    assert.equal(claimed, ids.length);
  });
});
