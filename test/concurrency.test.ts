// Concurrency: many workers claiming at once, two service instances on one database, and
// transitions racing on the same tasks. Afterwards every run was handed out at most once, nothing
// deadlocked (no 500s), and the state-machine invariants hold in the database.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { startQueue, type QueueService } from '../services/queue/src/app.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { invariantViolations } from './harness/invariants.js';
import { outboxRows } from './harness/outbox.js';
import taskcluster from 'taskcluster-client';

/** Runs `fn` over `items` with at most `n` in flight. */
async function limited<T, R>(items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

/** The status code of a client call: 200, or the error's status. */
async function outcome(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err: any) {
    if (!err.statusCode) throw err;
    return err.statusCode;
  }
}

describe('concurrency', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1 });
  });
  after(async () => {
    await q?.stop();
  });

  async function createMany(n: number, overrides: Record<string, unknown>): Promise<string[]> {
    const ids = Array.from({ length: n }, () => slugid());
    await limited(ids, 8, (taskId) => q.queue().createTask(taskId, taskDef(overrides)));
    return ids;
  }

  /** Claims until a long-poll comes back empty; returns `taskId/runId` of every claim. */
  async function drain(queue: any, taskQueueId: string, workerId: string, batch: number): Promise<string[]> {
    const got: string[] = [];
    for (;;) {
      const { tasks } = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId, tasks: batch });
      if (tasks.length === 0) return got;
      for (const c of tasks) got.push(`${c.status.taskId}/${c.runId}`);
    }
  }

  async function assertClaimedOnce(claims: string[][], taskIds: string[]) {
    const all = claims.flat();
    assert.equal(new Set(all).size, all.length, 'a run was handed out twice');
    assert.deepEqual(new Set(all), new Set(taskIds.map((t) => `${t}/0`)));
    // the database agrees on who holds each run
    const holders = await sql<{ task_id: string; worker_id: string }>`
      SELECT task_id, worker_id FROM runs WHERE task_id = ANY(${taskIds}) AND state = 'running'`.execute(q.service.ctx.db);
    assert.equal(holders.rows.length, taskIds.length);
    const byTask = new Map(holders.rows.map((r) => [r.task_id, r.worker_id]));
    claims.forEach((list, i) => {
      for (const c of list) assert.equal(byTask.get(c.split('/')[0]!), `w${i}`);
    });
    assert.deepEqual(await invariantViolations(q.service.ctx.db, taskIds), []);
  }

  it('20 workers claiming at once take each of 200 tasks exactly once', async () => {
    const taskQueueId = uniqueQueue();
    const taskIds = await createMany(200, { taskQueueId });
    const claims = await Promise.all(Array.from({ length: 20 }, (_, i) => drain(q.queue(), taskQueueId, `w${i}`, 1 + (i % 5))));
    await assertClaimedOnce(claims, taskIds);
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
      const taskIds = await createMany(60, { taskQueueId });
      const claims = await Promise.all(
        Array.from({ length: 12 }, (_, i) => drain(i % 2 ? otherQueue() : q.queue(), taskQueueId, `w${i}`, 1 + (i % 4))),
      );
      await assertClaimedOnce(claims, taskIds);
    });

    it("wake each other's long-polls", async () => {
      const taskQueueId = uniqueQueue();
      const claiming = otherQueue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
      const { waitFor } = await import('./harness/wait.js');
      await waitFor('a long-poll in the other instance', () => (other.ctx.waiters as any).waiting.get(taskQueueId)?.size > 0, { everyMs: 2 });
      const taskId = slugid();
      const before = Date.now();
      await q.queue().createTask(taskId, taskDef({ taskQueueId }));
      const { tasks } = await claiming;
      assert.equal(tasks[0].status.taskId, taskId);
      assert.ok(Date.now() - before < 500, `hand-off across instances took ${Date.now() - before} ms`);
    });
  });

  it('concurrent createTask calls: identical ones all succeed with one task, different ones leave one winner', async () => {
    const db = q.service.ctx.db;
    const same = slugid();
    const def = taskDef({ taskQueueId: uniqueQueue() });
    const codes = await Promise.all(Array.from({ length: 8 }, () => outcome(q.queue().createTask(same, def))));
    assert.deepEqual(codes, Array(8).fill(200));
    const differing = slugid();
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => outcome(q.queue().createTask(differing, taskDef({ payload: { i } })))));
    assert.equal(results.filter((c) => c === 200).length, 1, results.join(','));
    assert.equal(results.filter((c) => c === 409).length, 7, results.join(','));
    // a new group claimed by two schedulers at once: one of them gets it
    const group = slugid();
    const schedulers = await Promise.all(['sched-a', 'sched-b', 'sched-a', 'sched-b'].map((schedulerId) =>
      outcome(q.queue().createTask(slugid(), taskDef({ taskGroupId: group, schedulerId })))));
    const winner = (await db.selectFrom('task_groups').select('scheduler_id').where('task_group_id', '=', group).executeTakeFirstOrThrow()).scheduler_id;
    assert.deepEqual(schedulers, ['sched-a', 'sched-b', 'sched-a', 'sched-b'].map((s) => (s === winner ? 200 : 409)));
    assert.deepEqual(await invariantViolations(db, [same, differing]), []);
    const runs = await db.selectFrom('runs').select('task_id').where('task_id', 'in', [same, differing]).execute();
    assert.equal(runs.length, 2);
  });

  it('claimTask racing claimWork for the same runs never hands one out twice', async () => {
    const taskQueueId = uniqueQueue();
    const taskIds = await createMany(24, { taskQueueId });
    const byClaimTask: string[] = [];
    const [byClaimWork] = await Promise.all([
      Promise.all([drain(q.queue(), taskQueueId, 'w0', 4), drain(q.queue(), taskQueueId, 'w0', 2)]).then((r) => r.flat()),
      limited(taskIds, 6, async (taskId) => {
        const code = await outcome(q.queue().claimTask(taskId, 0, { workerGroup: 'wg', workerId: 'w1' }));
        assert.ok(code === 200 || code === 409, `claimTask answered ${code}`);
        if (code === 200) byClaimTask.push(`${taskId}/0`);
      }),
    ]);
    await assertClaimedOnce([byClaimWork, byClaimTask], taskIds);
  });

  it('cancel, claim, reclaim, report and rerun racing on the same tasks: no deadlock, no illegal state', async () => {
    const taskQueueId = uniqueQueue();
    const taskGroupId = slugid();
    const taskIds = await createMany(30, { taskQueueId, taskGroupId, retries: 1 });
    const codes: number[] = [];
    const record = async (p: Promise<unknown>) => codes.push(await outcome(p));
    const reasons = ['completed', 'failed', 'worker-shutdown', 'intermittent-task', 'malformed-payload'];

    const worker = async (w: number) => {
      for (;;) {
        const { tasks } = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: `w${w}`, tasks: 3 });
        if (tasks.length === 0) return;
        await Promise.all(tasks.map(async (c: any, i: number) => {
          const wq = q.queue({ credentials: c.credentials });
          await record(wq.reclaimTask(c.status.taskId, c.runId));
          const reason = reasons[(w + i) % reasons.length]!;
          if (reason === 'completed') await record(wq.reportCompleted(c.status.taskId, c.runId));
          else if (reason === 'failed') await record(wq.reportFailed(c.status.taskId, c.runId));
          else await record(wq.reportException(c.status.taskId, c.runId, { reason }));
        }));
      }
    };
    const creator = async () => {
      // more tasks join the same group meanwhile: its row is the contended one
      for (let i = 0; i < 6; i++) await record(q.queue().createTask(slugid(), taskDef({ taskQueueId, taskGroupId, retries: 1 })));
    };
    await Promise.all([
      ...Array.from({ length: 4 }, (_, w) => worker(w)),
      limited(taskIds.filter((_, i) => i % 2 === 0), 3, (taskId) => record(q.queue().cancelTask(taskId))),
      limited(taskIds.filter((_, i) => i % 3 === 0), 3, (taskId) => record(q.queue().rerunTask(taskId))),
      limited(taskIds.filter((_, i) => i % 5 === 0), 2, (taskId) => record(q.queue().cancelTask(taskId))),
      creator(),
    ]);
    const unexpected = codes.filter((c) => c !== 200 && c !== 409);
    assert.deepEqual(unexpected, [], `answers other than 200/409: ${unexpected.join(', ')}`);

    const db = q.service.ctx.db;
    assert.deepEqual(await invariantViolations(db), []);
    // each task's last committed message reports the state the task is in
    const all = await sql<{ task_id: string }>`SELECT task_id FROM tasks WHERE task_group_id = ${taskGroupId}`.execute(db);
    for (const { task_id } of all.rows) {
      const { status } = await q.queue().status(task_id);
      const msgs = await outboxRows(db, { taskId: task_id });
      const last = msgs[msgs.length - 1]!;
      // reclaims publish nothing, so a running run's takenUntil may have moved on since
      const settled = (s: any) => ({ ...s, runs: s.runs.map((r: any) => (r.state === 'running' ? { ...r, takenUntil: undefined } : r)) });
      assert.deepEqual(settled(last.body.status), settled(status), `${task_id}: the last message (${last.exchange}) disagrees with the task`);
    }
  });
});
