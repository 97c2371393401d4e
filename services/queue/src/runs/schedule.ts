// unscheduled/resolved → pending: append a pending run and its claimable `pending` row.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import { priorityNumber } from '../tasks/priority.js';
import { nextRunId, type RunRow, type TaskWithRuns } from '../tasks/status.js';

export const pendingChannel = 'conveyor_pending';

export type ReasonCreated = 'scheduled' | 'retry' | 'task-retry' | 'rerun' | 'exception';

/** The row of a new pending run (also used by deps/schedule-many.ts for batches). */
export function pendingRunRow(taskId: string, runId: number, reasonCreated: ReasonCreated, now: Date): RunRow {
  return {
    task_id: taskId,
    run_id: runId,
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
}

/** Appends a pending run; the caller has checked the precondition. Returns the new run. */
export async function addPendingRun(ctx: Ctx, trx: Trx, t: TaskWithRuns, reasonCreated: ReasonCreated): Promise<RunRow> {
  const now = ctx.clock.now();
  const run = pendingRunRow(t.task.task_id, nextRunId(t.runs), reasonCreated, now);
  // One statement, one round trip: the run, its claimable row, and the NOTIFY that wakes claimWork
  // long-polls on this queue at commit. (The two inserts touch different tables, so the order
  // PostgreSQL runs the CTEs in does not matter.)
  await sql`
    WITH r AS (
      INSERT INTO runs (task_id, run_id, state, reason_created, scheduled)
      VALUES (${run.task_id}, ${run.run_id}, ${run.state}, ${run.reason_created}, ${now})),
    p AS (
      INSERT INTO pending (task_queue_id, priority, task_id, run_id)
      VALUES (${t.task.task_queue_id}, ${priorityNumber(t.task.priority)}, ${run.task_id}, ${run.run_id}))
    SELECT pg_notify(${pendingChannel}, ${t.task.task_queue_id})`.execute(trx);
  t.runs.push(run);
  return run;
}
