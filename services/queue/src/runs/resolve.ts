// pending/running → completed | failed | exception, with an optional retry run.
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import { taskMessage, type OutboxMessage } from '../outbox/messages.js';
import type { RunRow, TaskStatus, TaskWithRuns } from '../tasks/status.js';
import { afterResolved } from './after-resolved.js';
import { addPendingRun, type ReasonCreated } from './schedule.js';

export interface Resolution {
  state: 'completed' | 'failed' | 'exception';
  reason: string;
  /** Retry with this reasonCreated while retries remain. */
  retry?: ReasonCreated;
}

export interface ResolveOutcome {
  retried: boolean;
  messages: OutboxMessage[];
}

/**
 * Resolves the latest run, which the caller has checked is `runId` and pending or running. Writes
 * nothing to the outbox itself: returns the messages for the caller to write.
 */
export async function resolveRun(ctx: Ctx, trx: Trx, t: TaskWithRuns, runId: number, res: Resolution): Promise<ResolveOutcome> {
  const now = ctx.clock.now();
  const run = t.runs[runId]!;
  if (run.state === 'pending') {
    await trx.deleteFrom('pending').where('task_id', '=', run.task_id).where('run_id', '=', runId).execute();
  }
  const updated = await trx
    .updateTable('runs')
    .set({ state: res.state, reason_resolved: res.reason, resolved: now })
    .where('task_id', '=', run.task_id)
    .where('run_id', '=', runId)
    .where('state', '=', run.state)
    .executeTakeFirst();
  // lockTask makes this impossible; should it ever happen, roll back rather than overwrite
  if (updated.numUpdatedRows !== 1n) throw new Error(`run ${run.task_id}/${runId} left state ${run.state} under the task lock`);
  markResolved(run, res, now);

  const retried = res.retry !== undefined && t.task.retries_left > 0 && new Date(t.task.deadline) > now;
  if (retried) {
    t.task.retries_left -= 1;
    await trx.updateTable('tasks').set({ retries_left: t.task.retries_left }).where('task_id', '=', run.task_id).execute();
    await addPendingRun(ctx, trx, t, res.retry!);
  }

  const messages = [resolvedMessage(t, runId)];
  if (retried) {
    messages.push(taskMessage('taskPending', t, { runId: runId + 1 }));
  } else {
    messages.push(...(await afterResolved(ctx, trx, t)));
  }
  return { retried, messages };
}

/** The in-memory run as the resolution's UPDATE leaves its row. */
export function markResolved(run: RunRow, res: Resolution, now: Date): void {
  run.state = res.state;
  run.reason_resolved = res.reason;
  run.resolved = now;
}

/**
 * task-completed / task-failed / task-exception for run `runId`, just resolved. `status`:
 * toStatus(t), when the caller has it already (it answers with the same object).
 */
export function resolvedMessage(t: TaskWithRuns, runId: number, status?: TaskStatus): OutboxMessage {
  const run = t.runs[runId]!;
  const exchange = run.state === 'completed' ? 'taskCompleted' : run.state === 'failed' ? 'taskFailed' : 'taskException';
  return taskMessage(exchange, t, { runId, workerGroup: run.worker_group, workerId: run.worker_id }, status);
}

/**
 * Resolves a task that has no runs (cancel or deadline of an unscheduled task): a synthetic run
 * with reasonCreated `exception`, scheduled and resolved now.
 */
export async function resolveUnscheduled(ctx: Ctx, trx: Trx, t: TaskWithRuns, reason: string): Promise<OutboxMessage[]> {
  const now = ctx.clock.now();
  const run = {
    task_id: t.task.task_id,
    run_id: t.runs.length,
    state: 'exception',
    reason_created: 'exception',
    reason_resolved: reason,
    worker_group: null,
    worker_id: null,
    taken_until: null,
    scheduled: now,
    started: null,
    resolved: now,
  };
  await trx.insertInto('runs').values(run).execute();
  t.runs.push(run);
  return [taskMessage('taskException', t, { runId: run.run_id }), ...(await afterResolved(ctx, trx, t))];
}
