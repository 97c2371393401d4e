// cancelTaskGroup: each unresolved task of the group → exception/canceled, one transaction per task
// (the same transition as cancelTask), a page of task ids at a time, a few tasks in parallel.
//
// Not one transaction for the group: cancelling resolves each task, which unblocks its all-resolved
// dependents, and a transaction holding many task locks while taking more could deadlock with a
// resolution going the other way through the graph. One lock at a time cannot.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import { eachLimited } from '../resolvers/free-task.js';
import { resolveRun, resolveUnscheduled } from '../runs/resolve.js';
import { deadlinePassed, withLockedTask } from '../runs/with-task.js';
import { taskState } from '../tasks/status.js';

const pageSize = 200;
const concurrency = 4;

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
    await eachLimited(ids, concurrency, async (taskId) => {
      if (await cancelOne(ctx, taskId)) cancelled.push(taskId);
    });
    if (ids.length < pageSize) break;
    after = ids[ids.length - 1]!;
  }
  const size = await sql<{ n: number }>`SELECT count(*)::int AS n FROM tasks WHERE task_group_id = ${taskGroupId}`.execute(ctx.db);
  cancelled.sort();
  return { taskGroupSize: size.rows[0]!.n, cancelledCount: cancelled.length, taskIds: cancelled };
}

async function cancelOne(ctx: Ctx, taskId: string): Promise<boolean> {
  return withLockedTask(ctx, taskId, async (trx, t, emit) => {
    // resolved, or past the deadline (the deadline loop's), since the page was read
    if (deadlinePassed(ctx, t)) return false;
    const state = taskState(t.runs);
    if (state === 'unscheduled') {
      emit(...(await resolveUnscheduled(ctx, trx, t, 'canceled')));
    } else if (state === 'pending' || state === 'running') {
      emit(...(await resolveRun(ctx, trx, t, t.runs.length - 1, { state: 'exception', reason: 'canceled' })).messages);
    } else {
      return false;
    }
    return true;
  });
}
