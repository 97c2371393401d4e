// Races between creating dependents and resolving their dependencies, and between dependencies of
// one task resolving at once. Transactions are held open at the racy moment, so each interleaving
// happens for certain rather than by luck.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { Trx } from '../services/queue/src/db/database.js';
import { writeOutbox } from '../services/queue/src/outbox/write.js';
import { resolveRun } from '../services/queue/src/runs/resolve.js';
import { lockTask } from '../services/queue/src/tasks/status.js';
import { claimAndResolve, create, inParallel, messagesByTask, states, until } from './harness/graph.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';

describe('dependency races', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue();
  });
  after(async () => {
    await q?.stop();
  });
  const db = () => q.service.ctx.db;
  const state = async (taskId: string) => (await states(db(), [taskId])).get(taskId);

  /** Runs `work` in a transaction that stays open until the returned release() is called. */
  async function holdOpen(work: (trx: Trx) => Promise<void>): Promise<{ release(): void; committed: Promise<void> }> {
    let release!: () => void;
    let ready!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const started = new Promise<void>((r) => (ready = r));
    const committed = db().transaction().execute(async (trx) => {
      await work(trx);
      ready();
      await gate;
    });
    await Promise.race([started, committed]);
    return { release, committed };
  }

  /** Waits until some session of this test's database waits for a row lock. */
  const someoneWaitsForALock = () =>
    until('a session waiting for a lock', async () => {
      const r = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(db());
      return r.rows[0]!.n > 0;
    });

  it('a dependent created while its dependency resolves is scheduled (createTask waits for the resolution)', async () => {
    const taskQueueId = uniqueQueue();
    const a = await create(q, { taskQueueId });
    const claim = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
    assert.equal(claim.tasks[0].status.taskId, a);

    // reportCompleted's transaction, held open after it resolved `a` (its row locked FOR UPDATE)
    const resolution = await holdOpen(async (trx) => {
      const t = (await lockTask(trx, a))!;
      const outcome = await resolveRun(q.service.ctx, trx, t, 0, { state: 'completed', reason: 'completed' });
      await writeOutbox(trx, q.config.exchangePrefix, outcome.messages);
    });
    const x = slugid();
    const creating = q.queue().createTask(x, taskDef({ taskQueueId: uniqueQueue(), dependencies: [a] }));
    // createTask is blocked on its FOR SHARE lock of `a`; its snapshot predates the resolution
    await someoneWaitsForALock();
    resolution.release();
    await resolution.committed;
    const created = await creating;
    assert.equal(created.status.state, 'pending', 'the dependency completed before the edge was written');
    assert.equal(await state(x), 'pending');
  });

  it('dependents created concurrently with their dependency resolving all end up pending', async () => {
    const pairs = await inParallel(Array.from({ length: 40 }), 8, async () => {
      const taskQueueId = uniqueQueue();
      const a = await create(q, { taskQueueId });
      const claim = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
      const x = slugid();
      await Promise.all([
        q.queue({ credentials: claim.tasks[0].credentials }).reportCompleted(a, 0),
        q.queue().createTask(x, taskDef({ taskQueueId: uniqueQueue(), dependencies: [a] })),
      ]);
      return x;
    });
    const s = await states(db(), pairs);
    assert.deepEqual([...s.values()].filter((v) => v !== 'pending'), []);
  });

  it('two dependencies resolving at once schedule their dependent exactly once', async () => {
    const dependents = await inParallel(Array.from({ length: 30 }), 6, async () => {
      const qa = uniqueQueue();
      const qb = uniqueQueue();
      const a = await create(q, { taskQueueId: qa });
      const b = await create(q, { taskQueueId: qb });
      const d = await create(q, { taskQueueId: uniqueQueue(), dependencies: [a, b] });
      await Promise.all([claimAndResolve(q, qa), claimAndResolve(q, qb)]);
      return d;
    });
    await until('every dependent pending', async () => [...(await states(db(), dependents)).values()].every((v) => v === 'pending'));
    const pending = await messagesByTask(db(), 'task-pending');
    for (const d of dependents) assert.equal(pending.get(d)?.length, 1);
  });

  it('a dependent locked by another transaction is left to the dependency loop, which schedules it', async () => {
    const taskQueueId = uniqueQueue();
    const a = await create(q, { taskQueueId });
    const one = await create(q, { taskQueueId: uniqueQueue(), dependencies: [a] });
    const held = await create(q, { taskQueueId: uniqueQueue(), dependencies: [a] });
    const two = await create(q, { taskQueueId: uniqueQueue(), dependencies: [a] });

    // someone (say, a scheduleTask) holds `held` while `a` resolves
    const holder = await holdOpen(async (trx) => void (await lockTask(trx, held)));
    await claimAndResolve(q, taskQueueId, 'completed', { taskId: a });
    // the resolution did not wait: the others are pending, `held` is queued for the loop
    assert.equal(await state(held), 'unscheduled');
    for (const id of [one, two]) assert.equal(await state(id), 'pending');
    const queued = await sql<{ task_id: string }>`SELECT task_id FROM resolved_tasks_queue WHERE task_id = ${a}`.execute(db());
    assert.equal(queued.rows.length, 1);
    holder.release();
    await holder.committed;
    await until('the held dependent pending', async () => (await state(held)) === 'pending');
    const pending = await messagesByTask(db(), 'task-pending');
    for (const id of [one, held, two]) assert.equal(pending.get(id)?.length, 1);
  });
});
