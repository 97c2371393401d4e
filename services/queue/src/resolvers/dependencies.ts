// The dependency loop: goes on with the dependents a resolving transaction left in
// resolved_tasks_queue, one bounded batch per transaction. Each row is a range of one task's
// dependents; workers and replicas take different rows (SKIP LOCKED), so a big fan-out is shared
// out, while a row is handled by one worker at a time, its cursor moving forward with each batch.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import { resolveDependentsBatch } from '../deps/resolve.js';
import { defineLoop, type LoopResult } from '../loops/loop.js';
import { writeOutbox } from '../outbox/write.js';

export async function continueDependents(ctx: Ctx): Promise<LoopResult> {
  let taken: string | undefined;
  try {
    return await nextBatch(ctx, (id) => (taken = id));
  } catch (err) {
    if (taken !== undefined) await requeueAtBack(ctx, taken);
    throw err;
  }
}

/**
 * A batch that failed (a bug, or a deadlock PostgreSQL broke) goes behind every other row, so one
 * bad row cannot stall all dependency resolution while it is retried.
 */
async function requeueAtBack(ctx: Ctx, id: string): Promise<void> {
  await sql`
    WITH gone AS (
      DELETE FROM resolved_tasks_queue WHERE id = ${id}
      RETURNING task_id, completed, after_dependent, until_dependent, created)
    INSERT INTO resolved_tasks_queue (task_id, completed, after_dependent, until_dependent, created)
    SELECT task_id, completed, after_dependent, until_dependent, created FROM gone`.execute(ctx.db);
}

async function nextBatch(ctx: Ctx, took: (id: string) => void): Promise<LoopResult> {
  return ctx.db.transaction().execute(async (trx) => {
    const item = await sql<{ id: string; task_id: string; completed: boolean; after_dependent: string; until_dependent: string | null }>`
      SELECT id, task_id, completed, after_dependent, until_dependent FROM resolved_tasks_queue
      ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`.execute(trx);
    const row = item.rows[0];
    if (!row) return { handled: 0, full: false };
    took(row.id);
    const cursor = { taskId: row.task_id, completed: row.completed, after: row.after_dependent, until: row.until_dependent ?? undefined };
    const batch = await resolveDependentsBatch(ctx, trx, cursor, { wait: true });
    if (batch.next === undefined) {
      await trx.deleteFrom('resolved_tasks_queue').where('id', '=', row.id).execute();
    } else {
      await trx.updateTable('resolved_tasks_queue').set({ after_dependent: batch.next }).where('id', '=', row.id).execute();
    }
    await writeOutbox(trx, ctx.config.exchangePrefix, batch.messages);
    // a row was there: look again at once, until the table is empty
    return { handled: batch.examined, full: true };
  });
}

export const dependencyLoop = defineLoop({
  name: 'dependencies',
  intervalMs: (ctx) => ctx.config.resolverIntervalMs,
  runOnce: continueDependents,
});
