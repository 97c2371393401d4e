// The dependency loop with a batch of 2: dependents past the first batch go to resolved_tasks_queue
// in batch-sized ranges, and a range that fails goes behind the others instead of stalling them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { continueDependents } from '../services/queue/src/resolvers/dependencies.js';
import { claimAndResolve, create, states, until } from './harness/graph.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { uniqueQueue } from './harness/tasks.js';

describe('dependency loop', () => {
  let q: TestQueue;
  before(async () => {
    // loops off: the test runs the loop itself, one batch at a time
    q = await startTestQueue({ dependencyBatchSize: 2, enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });
  const db = () => q.service.ctx.db;
  const queued = async () =>
    (await sql<{ task_id: string; after_dependent: string; until_dependent: string | null }>`
      SELECT task_id, after_dependent, until_dependent FROM resolved_tasks_queue ORDER BY id`.execute(db())).rows;

  it('cuts the rest of a fan-out into batch-sized ranges and works through them', async () => {
    const taskQueueId = uniqueQueue();
    const root = await create(q, { taskQueueId });
    const dependents = [];
    for (let i = 0; i < 7; i++) dependents.push(await create(q, { taskQueueId: uniqueQueue(), dependencies: [root] }));
    await claimAndResolve(q, taskQueueId, 'completed', { taskId: root });

    const s = await states(db(), dependents);
    assert.equal([...s.values()].filter((v) => v === 'pending').length, 2, 'the first batch, in the resolving transaction');
    const rows = await queued();
    // 5 left: ranges (a, b], (b, c], (c, end)
    assert.equal(rows.length, 3);
    assert.equal(rows[2]!.until_dependent, null);
    for (let i = 1; i < rows.length; i++) assert.equal(rows[i]!.after_dependent, rows[i - 1]!.until_dependent);

    let batches = 0;
    while ((await continueDependents(q.service.ctx)).handled > 0) batches++;
    assert.equal(batches, 3);
    assert.deepEqual([...(await states(db(), dependents)).values()].filter((v) => v !== 'pending'), []);
    assert.deepEqual(await queued(), []);
  });

  it('puts a range that fails behind the others, which go on', async () => {
    const rootQueue = uniqueQueue();
    const root = await create(q, { taskQueueId: rootQueue });
    const dependents = [];
    for (let i = 0; i < 5; i++) dependents.push(await create(q, { taskQueueId: uniqueQueue(), dependencies: [root] }));
    await claimAndResolve(q, rootQueue, 'completed', { taskId: root });
    // 3 left: ranges (a, b] and (b, end)
    const rows = await queued();
    assert.equal(rows.length, 2);
    // a dependent in the first queued range that cannot be scheduled (a priority the code refuses)
    const first = await sql<{ dependent_task_id: string }>`
      SELECT dependent_task_id FROM task_dependencies
      WHERE required_task_id = ${root} AND NOT satisfied AND dependent_task_id <= ${rows[0]!.until_dependent}
      ORDER BY dependent_task_id LIMIT 1`.execute(db());
    const poisoned = first.rows[0]!.dependent_task_id;
    await sql`UPDATE tasks SET priority = 'no-such-priority' WHERE task_id = ${poisoned}`.execute(db());

    await assert.rejects(continueDependents(q.service.ctx), /unknown priority/);
    const after = await queued();
    assert.equal(after.length, 2);
    assert.equal(after[1]!.after_dependent, rows[0]!.after_dependent, 'the failed range went to the back');
    // the other range goes first now
    assert.equal((await continueDependents(q.service.ctx)).handled, 1);

    // once repaired, the failed range goes through as well
    await sql`UPDATE tasks SET priority = 'lowest' WHERE task_id = ${poisoned}`.execute(db());
    await until('the queue drained', async () => {
      await continueDependents(q.service.ctx);
      return (await queued()).length === 0;
    });
    assert.deepEqual([...(await states(db(), dependents)).values()].filter((v) => v !== 'pending'), []);
  });
});
