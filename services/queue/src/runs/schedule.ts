// unscheduled/resolved → pending: append a pending run and its claimable `pending` row.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import { priorityNumber } from '../tasks/priority.js';
import { nextRunId, type RunRow, type TaskWithRuns } from '../tasks/status.js';

export const pendingChannel = 'conveyor_pending';

export type ReasonCreated = 'scheduled' | 'retry' | 'task-retry' | 'rerun' | 'exception';

/** Appends a pending run; the caller has checked the precondition. Returns the new run. */
export async function addPendingRun(ctx: Ctx, trx: Trx, t: TaskWithRuns, reasonCreated: ReasonCreated): Promise<RunRow> {
  const now = ctx.clock.now();
  const run: RunRow = {
    task_id: t.task.task_id,
    run_id: nextRunId(t.runs),
    state: 'pending',
    reason_created: reasonCreated,
    reason_resolved: null,
    worker_group: null,
    worker_id: null,
    taken_until: null,
    scheduled: now,
    started: null,
    resolved: null,
  };
  await trx.insertInto('runs').values(run).execute();
  await trx
    .insertInto('pending')
    .values({
      task_queue_id: t.task.task_queue_id,
      priority: priorityNumber(t.task.priority),
      task_id: run.task_id,
      run_id: run.run_id,
    })
    .execute();
  // Wakes claimWork long-polls waiting on this queue, at commit.
  await sql`SELECT pg_notify(${pendingChannel}, ${t.task.task_queue_id})`.execute(trx);
  t.runs.push(run);
  return run;
}
