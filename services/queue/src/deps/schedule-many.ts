// unscheduled → pending for a batch of dependents at once: addPendingRun's rows (run 0 `scheduled`
// plus its `pending` row) written with one INSERT each instead of one per task. Unblocking 10,000
// dependents is ~3× faster this way (bench/graph), and the batch stays one short transaction.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import { taskMessage, type OutboxMessage } from '../outbox/messages.js';
import { pendingChannel, pendingRunRow } from '../runs/schedule.js';
import { priorityNumber } from '../tasks/priority.js';
import type { RunRow, TaskWithRuns } from '../tasks/status.js';

/**
 * The caller holds each task's row lock and has checked it has no runs and is before its deadline.
 * Returns the task-pending messages.
 */
export async function scheduleMany(ctx: Ctx, trx: Trx, tasks: TaskWithRuns[]): Promise<OutboxMessage[]> {
  if (tasks.length === 0) return [];
  const now = ctx.clock.now();
  const runs: RunRow[] = tasks.map((t) => pendingRunRow(t.task.task_id, 0, 'scheduled', now));
  await trx.insertInto('runs').values(runs).execute();
  await trx
    .insertInto('pending')
    .values(
      tasks.map((t) => ({
        task_queue_id: t.task.task_queue_id,
        priority: priorityNumber(t.task.priority),
        task_id: t.task.task_id,
        run_id: 0,
      })),
    )
    .execute();
  for (const queueId of new Set(tasks.map((t) => t.task.task_queue_id))) {
    await sql`SELECT pg_notify(${pendingChannel}, ${queueId})`.execute(trx);
  }
  return tasks.map((t, i) => {
    t.runs.push(runs[i]!);
    return taskMessage('taskPending', t, { runId: 0 });
  });
}
