// One transaction around one task for the background resolvers: like runs/with-task.ts, but a task
// another transaction holds is skipped (SKIP LOCKED) rather than waited for. Replicas running the
// same loop then spread over different tasks, and whoever comes second re-checks the
// precondition under the lock and finds nothing left to do.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import type { OutboxMessage } from '../outbox/messages.js';
import { writeOutbox } from '../outbox/write.js';
import { lockTask, type TaskWithRuns } from '../tasks/status.js';

/** Runs `fn` with the task locked and writes its messages; undefined if the task is busy or gone. */
export async function withFreeTask<T>(
  ctx: Ctx,
  taskId: string,
  fn: (trx: Trx, t: TaskWithRuns) => Promise<{ result: T; messages: OutboxMessage[] }>,
): Promise<T | undefined> {
  return ctx.db.transaction().execute(async (trx) => {
    const free = await sql`SELECT 1 FROM tasks WHERE task_id = ${taskId} FOR UPDATE SKIP LOCKED`.execute(trx);
    if (free.rows.length === 0) return undefined;
    // read in a statement after the lock: the state every earlier holder committed
    const t = (await lockTask(trx, taskId))!;
    const { result, messages } = await fn(trx, t);
    await writeOutbox(trx, ctx.config.exchangePrefix, messages);
    return result;
  });
}

/**
 * Runs `work` over `items`, `concurrency` at a time. An item that throws is logged and counted, and
 * the others go on: one bad task must not hold up every other claim or deadline.
 */
export async function eachLimited<T>(ctx: Ctx, loop: string, items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<number> {
  let i = 0;
  let failed = 0;
  const worker = async () => {
    while (i < items.length) {
      const item = items[i++]!;
      try {
        await work(item);
      } catch (err) {
        failed += 1;
        ctx.log.error({ err, loop, item }, 'background loop could not handle an item; it is retried later');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return failed;
}
