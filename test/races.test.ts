// Transitions racing on the same tasks: createTask against itself, claimTask against claimWork,
// and cancel, claim, reclaim, report and rerun all at once. Nothing deadlocks (no 500s), no run is
// handed out twice, the invariants hold in the database, and each task's last message reports the
// state it is in.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { invariantViolations } from './harness/invariants.js';
import { outboxRows } from './harness/outbox.js';
import { assertClaimedOnce, createMany, drain, limited, outcome } from './harness/concurrency.js';

describe('races', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1 });
  });
  after(async () => {
    await q?.stop();
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
    const taskIds = await createMany(q, 24, { taskQueueId });
    const byClaimTask: string[] = [];
    const [byClaimWork] = await Promise.all([
      Promise.all([drain(q.queue(), taskQueueId, 'w0', 4), drain(q.queue(), taskQueueId, 'w0', 2)]).then((r) => r.flat()),
      limited(taskIds, 6, async (taskId) => {
        const code = await outcome(q.queue().claimTask(taskId, 0, { workerGroup: 'wg', workerId: 'w1' }));
        assert.ok(code === 200 || code === 409, `claimTask answered ${code}`);
        if (code === 200) byClaimTask.push(`${taskId}/0`);
      }),
    ]);
    await assertClaimedOnce(q, [byClaimWork, byClaimTask], taskIds);
  });

  it('cancel, claim, reclaim, report and rerun racing on the same tasks: no deadlock, no illegal state', async () => {
    const taskQueueId = uniqueQueue();
    const taskGroupId = slugid();
    const taskIds = await createMany(q, 30, { taskQueueId, taskGroupId, retries: 1 });
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
