// One transaction around one task: lock its row, hand the task to the transition, write the
// transition's messages to the outbox before commit.
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import { ApiError } from '../http/errors.js';
import type { OutboxMessage } from '../outbox/messages.js';
import { writeOutbox } from '../outbox/write.js';
import { lockTask, type TaskWithRuns } from '../tasks/status.js';

export async function withLockedTask<T>(
  ctx: Ctx,
  taskId: string,
  fn: (trx: Trx, t: TaskWithRuns, emit: (...m: OutboxMessage[]) => void) => Promise<T>,
): Promise<T> {
  return ctx.db.transaction().execute(async (trx) => {
    const t = await lockTask(trx, taskId);
    if (!t) throw taskNotFound(taskId);
    const messages: OutboxMessage[] = [];
    const result = await fn(trx, t, (...m) => messages.push(...m));
    await writeOutbox(trx, ctx.config.exchangePrefix, messages);
    return result;
  });
}

export function taskNotFound(taskId: string): ApiError {
  return new ApiError('ResourceNotFound', `Task ${taskId} not found`, { taskId });
}

export function deadlinePassed(ctx: Ctx, t: TaskWithRuns): boolean {
  return new Date(t.task.deadline) <= ctx.clock.now();
}

export function assertBeforeDeadline(ctx: Ctx, t: TaskWithRuns): void {
  if (deadlinePassed(ctx, t)) {
    throw new ApiError('RequestConflict', `Task ${t.task.task_id} is past its deadline and can no longer be changed`, {
      taskId: t.task.task_id,
    });
  }
}
