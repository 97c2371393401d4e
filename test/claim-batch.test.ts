// Concurrent claims share one transaction (claims/claim.ts, take.ts): requests on several queues,
// from several workers (one quarantined, one asking twice), with different counts, are served by
// one statement. Each run goes to one request, each request gets at most its count, in priority
// then FIFO order, earlier requests first; each claim writes its task-running message and the
// workers' recent tasks, and the invariants hold.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { claimBatcher, claimPending } from '../services/queue/src/claims/claim.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { invariantViolations } from './harness/invariants.js';
import { outboxRows } from './harness/outbox.js';
import { assertValidMessage } from './harness/messages.js';
import { waitFor } from './harness/wait.js';

const priorities = ['highest', 'very-high', 'high', 'medium', 'low', 'very-low', 'lowest'];

interface Made {
  taskId: string;
  taskQueueId: string;
  priority: string;
  /** creation order, which is FIFO order within a priority */
  n: number;
}

/** Priority first, then the order made. */
const claimOrder = (a: Made, b: Made) => priorities.indexOf(a.priority) - priorities.indexOf(b.priority) || a.n - b.n;

describe('claims served in shared transactions', () => {
  let q: TestQueue;
  let made: Made[];
  let made_n = 0;
  before(async () => {
    // no background loops: nothing else claims or resolves while a test looks
    q = await startTestQueue({ claimWorkTimeoutSec: 2, taskClaimTimeoutSec: 600, enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });

  const split = (taskQueueId: string) => taskQueueId.split('/') as [string, string];

  /** `n` tasks on the queue, one after the other, priorities cycling from `offset`. */
  async function make(taskQueueId: string, n: number, offset = 0): Promise<Made[]> {
    const out: Made[] = [];
    for (let i = 0; i < n; i++) {
      const m = { taskId: slugid(), taskQueueId, priority: priorities[(i * 3 + offset) % priorities.length]!, n: made_n++ };
      await q.queue().createTask(m.taskId, taskDef({ taskQueueId, priority: m.priority }));
      out.push(m);
    }
    made.push(...out);
    return out;
  }

  /** A worker that claimed once (so it exists) and is now quarantined for an hour. */
  async function quarantined(taskQueueId: string, workerId: string): Promise<string> {
    const [first] = await make(taskQueueId, 1);
    const { tasks } = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId, tasks: 1 });
    assert.equal(tasks[0].status.taskId, first!.taskId);
    made = made.filter((m) => m.taskId !== first!.taskId);
    await q.queue().quarantineWorker(...split(taskQueueId), 'wg', workerId, { quarantineUntil: taskcluster.fromNowJSON('1 hour') });
    return first!.taskId;
  }

  /** Exactly one task-running message per claim, naming the claim's worker and run. */
  async function assertRunningMessages(claims: Array<{ claim: any; workerId: string }>) {
    const rows = await outboxRows(q.service.ctx.db, { exchange: 'task-running' });
    const byTask = new Map<string, typeof rows>();
    for (const r of rows) byTask.set(r.body.status.taskId, [...(byTask.get(r.body.status.taskId) ?? []), r]);
    for (const { claim, workerId } of claims) {
      const mine = byTask.get(claim.status.taskId) ?? [];
      assert.equal(mine.length, 1, `task-running messages of ${claim.status.taskId}`);
      const row = mine[0]!;
      assertValidMessage(row);
      assert.equal(row.body.runId, claim.runId);
      assert.equal(row.body.workerGroup, 'wg');
      assert.equal(row.body.workerId, workerId);
      assert.equal(new Date(row.body.takenUntil).getTime(), new Date(claim.takenUntil).getTime());
      assert.deepEqual(row.body.status, claim.status);
    }
  }

  function assertClaim(c: any, taskQueueId: string, workerId: string) {
    assert.equal(c.status.state, 'running');
    assert.equal(c.status.taskQueueId, taskQueueId);
    assert.equal(c.workerGroup, 'wg');
    assert.equal(c.workerId, workerId);
    const run = c.status.runs[c.runId];
    assert.equal(run.state, 'running');
    assert.equal(run.workerId, workerId);
    assert.equal(run.takenUntil, c.takenUntil);
    assert.equal(c.runId, c.status.runs.length - 1);
    assert.equal(c.task.taskQueueId, taskQueueId);
    assert.equal(c.task.priority, made.find((m) => m.taskId === c.status.taskId)!.priority);
    assert.match(c.credentials.clientId, new RegExp(`^task-client/${c.status.taskId}/${c.runId}/on/wg/${workerId}/until/`));
  }

  it('deals each queue out to its requests in order: priority then FIFO, earlier requests first, none to a quarantined worker', async () => {
    made = [];
    const [qa, qb, qc] = [uniqueQueue(), uniqueQueue(), uniqueQueue()];
    const held = await quarantined(qa, 'held');
    await make(qa, 14);
    await make(qb, 9, 2);
    await make(qc, 3, 5);
    // [queue, worker, count]; `twice` asks twice on qa, `held` is quarantined and asks first
    const asks: Array<[string, string, number]> = [
      [qa, 'held', 5], [qa, 'a1', 3], [qb, 'b1', 4], [qa, 'twice', 2], [qc, 'c1', 2], [qb, 'b2', 1],
      [qa, 'a2', 1], [qc, 'c2', 4], [qa, 'twice', 4], [qb, 'b3', 6], [qa, 'held', 1], [qa, 'a3', 32],
    ];
    // what the dealing must give: each queue's runs in claim order, to its requests in order
    const left = new Map([qa, qb, qc].map((tq) => [tq, made.filter((m) => m.taskQueueId === tq).sort(claimOrder)]));
    const expected = asks.map(([tq, w, n]) => (w === 'held' ? [] : left.get(tq)!.splice(0, n).map((m) => m.taskId)));

    const stats = { ...claimBatcher(q.service.ctx).stats };
    // submitted in one turn of the event loop, so one batch serves them all
    const answers = await Promise.all(
      asks.map(([taskQueueId, workerId, n]) => claimPending(q.service.ctx, { taskQueueId, workerGroup: 'wg', workerId }, n)),
    );
    const got = answers.map((a) => a.claims);
    // each queue's requests asked for more than it held: nothing left pending anywhere
    assert.deepEqual(answers.map((a) => a.morePending), asks.map(() => false));
    const now = claimBatcher(q.service.ctx).stats;
    assert.deepEqual(
      { batches: now.batches - stats.batches, items: now.items - stats.items, fallbacks: now.fallbacks - stats.fallbacks },
      { batches: 1, items: asks.length, fallbacks: 0 },
    );

    assert.deepEqual(got.map((claims) => claims.map((c) => c.status.taskId)), expected);
    got.forEach((claims, i) => {
      const [taskQueueId, workerId, n] = asks[i]!;
      assert.ok(claims.length <= n);
      for (const c of claims) assertClaim(c, taskQueueId, workerId);
    });
    // one takenUntil for the batch
    assert.equal(new Set(got.flat().map((c) => c.takenUntil)).size, 1);
    // everything pending was handed out, once
    const all = got.flat().map((c) => c.status.taskId);
    assert.equal(new Set(all).size, all.length);
    assert.deepEqual(new Set(all), new Set(made.map((m) => m.taskId)));

    await assertRunningMessages(got.flatMap((claims, i) => claims.map((claim) => ({ claim, workerId: asks[i]![1] }))));

    // recent tasks: one row per worker; `twice` has both requests' tasks, in request order
    const recent = async (taskQueueId: string, workerId: string) =>
      (await q.queue().getWorker(...split(taskQueueId), 'wg', workerId)).recentTasks.map((r: any) => r.taskId);
    assert.deepEqual(await recent(qa, 'twice'), [...expected[3]!, ...expected[8]!]);
    assert.deepEqual(await recent(qa, 'a3'), expected[11]);
    assert.deepEqual(await recent(qb, 'b3'), expected[9]);
    assert.deepEqual(await recent(qc, 'c2'), expected[7]);
    // the quarantined worker got nothing and its record is as it was
    const heldWorker = await q.queue().getWorker(...split(qa), 'wg', 'held');
    assert.deepEqual(heldWorker.recentTasks.map((r: any) => r.taskId), [held]);
    assert.ok(new Date(heldWorker.quarantineUntil).getTime() > Date.now());

    assert.deepEqual(await invariantViolations(q.service.ctx.db, [...all, held]), []);
  });

  it('keeps a worker to its last 20 recent tasks when one batch hands it more', async () => {
    made = [];
    const taskQueueId = uniqueQueue();
    await make(taskQueueId, 30);
    const who = { taskQueueId, workerGroup: 'wg', workerId: 'busy' };
    const answers = await Promise.all([claimPending(q.service.ctx, who, 12), claimPending(q.service.ctx, who, 12)]);
    // 6 of the 30 stay pending, and both requests say so
    assert.deepEqual(answers.map((a) => a.morePending), [true, true]);
    const got = answers.map((a) => a.claims);
    const ids = got.flat().map((c) => c.status.taskId);
    assert.deepEqual(ids, [...made].sort(claimOrder).slice(0, 24).map((m) => m.taskId));
    const w = await q.queue().getWorker(...split(taskQueueId), 'wg', 'busy');
    assert.deepEqual(w.recentTasks, ids.slice(-20).map((taskId) => ({ taskId, runId: 0 })));
  });

  it('many concurrent claimWork long-polls over several queues: each run once, each answer within its count and in order', async (t) => {
    made = [];
    const before = { ...claimBatcher(q.service.ctx).stats };
    const queues = [uniqueQueue(), uniqueQueue(), uniqueQueue(), uniqueQueue()];
    const held = await quarantined(queues[0]!, 'held');
    for (const [i, tq] of queues.entries()) await make(tq, 8 + 3 * i, i);
    const workers = ['w0', 'w1', 'w2', 'w3', 'w4', 'w5', 'held'];
    const calls = Array.from({ length: 42 }, (_, i) => ({
      taskQueueId: queues[i % queues.length]!,
      workerId: workers[i % workers.length]!,
      tasks: 1 + ((i * 5) % 7),
    }));
    const answers: Array<{ call: (typeof calls)[number]; claims: any[] }> = [];
    const claiming = Promise.all(
      calls.map(async (call) => {
        const { tasks } = await q.queue().claimWork(call.taskQueueId, { workerGroup: 'wg', workerId: call.workerId, tasks: call.tasks });
        answers.push({ call, claims: tasks });
      }),
    );
    // they ask for more than is pending: some wait, and tasks made now wake them
    const waiting = () => q.service.ctx.waiters.inLine();
    await waitFor('long-polls waiting', () => waiting() > 0, { everyMs: 2 });
    for (const [i, tq] of queues.entries()) await make(tq, 6, i + 1);
    await claiming;
    const stats = claimBatcher(q.service.ctx).stats;
    t.diagnostic(`${stats.items - before.items} claim attempts in ${stats.batches - before.batches} transactions`);
    assert.equal(stats.fallbacks, before.fallbacks);

    const byTask = new Map<string, Made>(made.map((m) => [m.taskId, m]));
    const handed: string[] = [];
    for (const { call, claims } of answers) {
      assert.ok(claims.length <= call.tasks, `${claims.length} claims for a request of ${call.tasks}`);
      // quarantined on the first queue only
      if (call.workerId === 'held' && call.taskQueueId === queues[0]) assert.deepEqual(claims, []);
      for (const c of claims) assertClaim(c, call.taskQueueId, call.workerId);
      // within one answer: priority, then FIFO
      const mine = claims.map((c) => byTask.get(c.status.taskId)!);
      assert.deepEqual(mine, [...mine].sort(claimOrder));
      handed.push(...claims.map((c) => c.status.taskId));
    }
    assert.equal(new Set(handed).size, handed.length, 'a run was handed out twice');
    // whatever is left is still pending, and claimable
    const rest = made.filter((m) => !handed.includes(m.taskId));
    for (const m of rest) assert.equal((await q.queue().status(m.taskId)).status.state, 'pending');
    await assertRunningMessages(answers.flatMap(({ call, claims }) => claims.map((claim) => ({ claim, workerId: call.workerId }))));

    // recent tasks: each worker's are among the runs it got, once each, at most 20
    for (const tq of queues) {
      for (const w of workers) {
        if (w === 'held' && tq === queues[0]) continue;
        const got = answers.filter((a) => a.call.taskQueueId === tq && a.call.workerId === w).flatMap((a) => a.claims.map((c) => c.status.taskId));
        if (got.length === 0) continue;
        const recent = (await q.queue().getWorker(...split(tq), 'wg', w)).recentTasks.map((r: any) => r.taskId);
        assert.equal(recent.length, Math.min(20, got.length));
        assert.equal(new Set(recent).size, recent.length);
        for (const id of recent) assert.ok(got.includes(id));
      }
    }
    const heldWorker = await q.queue().getWorker(...split(queues[0]!), 'wg', 'held');
    assert.deepEqual(heldWorker.recentTasks.map((r: any) => r.taskId), [held]);
    assert.deepEqual(await invariantViolations(q.service.ctx.db, [...made.map((m) => m.taskId), held]), []);
  });
});
