// cancelTaskGroup: each unresolved task of the group → exception/canceled (the transition of
// cancelTask), in transactions of a bounded batch of tasks: a group of 10,000 is 100 short
// transactions, not one long one, and not 10,000 commits either.
//
// Deadlock-free: a batch locks its tasks in sorted order like every multi-task lock, and what it
// takes after them never waits for a task row — the dependents each resolution unblocks are taken
// SKIP LOCKED (deps/resolve.ts), and the group row comes last in the lock order.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { OutboxMessage } from '../outbox/messages.js';
import { writeOutbox } from '../outbox/write.js';
import { resolveRun, resolveUnscheduled } from '../runs/resolve.js';
import { deadlinePassed } from '../runs/with-task.js';
import { loadTask, taskState } from '../tasks/status.js';

const pageSize = 200;
const batchSize = 50;

export interface CancelSummary {
  taskGroupSize: number;
  cancelledCount: number;
  taskIds: string[];
}

/** Cancels what is unresolved now; returns what this call changed. The group must be sealed. */
export async function cancelGroup(ctx: Ctx, taskGroupId: string): Promise<CancelSummary> {
  const cancelled: string[] = [];
  let after = '';
  for (;;) {
    const now = ctx.clock.now();
    const page = await sql<{ task_id: string }>`
      SELECT t.task_id FROM tasks t
      WHERE t.task_group_id = ${taskGroupId} AND t.task_id > ${after} AND t.deadline > ${now}
        AND coalesce((SELECT r.state FROM runs r WHERE r.task_id = t.task_id ORDER BY r.run_id DESC LIMIT 1), 'unscheduled')
          IN ('unscheduled', 'pending', 'running')
      ORDER BY t.task_id LIMIT ${pageSize}`.execute(ctx.db);
    const ids = page.rows.map((r) => r.task_id);
    for (let i = 0; i < ids.length; i += batchSize) cancelled.push(...(await cancelBatch(ctx, ids.slice(i, i + batchSize))));
    if (ids.length < pageSize) break;
    after = ids[ids.length - 1]!;
  }
  const size = await sql<{ n: number }>`SELECT count(*)::int AS n FROM tasks WHERE task_group_id = ${taskGroupId}`.execute(ctx.db);
  return { taskGroupSize: size.rows[0]!.n, cancelledCount: cancelled.length, taskIds: cancelled };
}

/** One transaction: the tasks still unresolved and before their deadline under the lock are cancelled. */
async function cancelBatch(ctx: Ctx, taskIds: string[]): Promise<string[]> {
  return ctx.db.transaction().execute(async (trx) => {
    const locked = await sql<{ task_id: string }>`
      SELECT task_id FROM tasks WHERE task_id = ANY(${taskIds}) ORDER BY task_id FOR UPDATE`.execute(trx);
    const ids = locked.rows.map((r) => r.task_id);
    // as lockTask does: wait out a claim in flight (claims lock pending rows, not tasks)
    await sql`SELECT 1 FROM pending WHERE task_id = ANY(${ids}) ORDER BY task_id, run_id FOR UPDATE`.execute(trx);
    const messages: OutboxMessage[] = [];
    const cancelled: string[] = [];
    for (const id of ids) {
      // read now, not with the batch: cancelling an earlier task may have scheduled this one (its
      // all-resolved dependent) in this very transaction
      const t = (await loadTask(trx, id))!;
      if (deadlinePassed(ctx, t)) continue;
      const state = taskState(t.runs);
      if (state === 'unscheduled') {
        messages.push(...(await resolveUnscheduled(ctx, trx, t, 'canceled')));
      } else if (state === 'pending' || state === 'running') {
        messages.push(...(await resolveRun(ctx, trx, t, t.runs.length - 1, { state: 'exception', reason: 'canceled' })).messages);
      } else {
        continue;
      }
      cancelled.push(id);
    }
    await writeOutbox(trx, ctx.config.exchangePrefix, messages);
    return cancelled;
  });
}
