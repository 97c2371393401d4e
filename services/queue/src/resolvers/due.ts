// What the claim-expiry and deadline loops share: each due task is resolved in a transaction of its
// own around its row lock, taken SKIP LOCKED — replicas running the same loop spread over
// different tasks, and whoever comes second re-checks the precondition under the lock and finds
// nothing left to do. A few tasks go at once; one that fails is logged and the rest go on.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import type { LoopResult } from '../loops/loop.js';
import type { OutboxMessage } from '../outbox/messages.js';
import { writeOutbox } from '../outbox/write.js';
import { lockTask, type TaskWithRuns } from '../tasks/status.js';

const concurrency = 4;
/** A due task another transaction held is looked at again this soon. */
const retryBusyMs = 50;

export interface DueBatch<T> {
  loop: string;
  /** The due items found (at most `batchSize`). */
  items: T[];
  batchSize: number;
  taskId(item: T): string;
  /** Under the task's lock: the transition's messages, none if there was nothing to do. */
  resolve(trx: Trx, t: TaskWithRuns, item: T): Promise<OutboxMessage[]>;
  /** Milliseconds until the next item falls due, if any. */
  nextDueMs(): Promise<number | undefined>;
}

export async function resolveDue<T>(ctx: Ctx, b: DueBatch<T>): Promise<LoopResult> {
  let handled = 0;
  let busy = 0;
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < b.items.length) {
      const item = b.items[next++]!;
      try {
        const changed = await withFreeTask(ctx, b.taskId(item), (trx, t) => b.resolve(trx, t, item));
        if (changed === undefined) busy += 1;
        else if (changed) handled += 1;
      } catch (err) {
        failed += 1;
        ctx.log.error({ err, loop: b.loop, item }, 'background loop could not handle an item; it is retried later');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, b.items.length) }, worker));
  return {
    handled,
    full: b.items.length === b.batchSize && failed === 0,
    // after a failure, not sooner than the interval: the failed item is still due
    nextDueMs: failed > 0 ? undefined : busy > 0 ? retryBusyMs : await b.nextDueMs(),
  };
}

/** Runs `fn` with the task locked and writes its messages: whether it changed anything, undefined if busy or gone. */
async function withFreeTask(ctx: Ctx, taskId: string, fn: (trx: Trx, t: TaskWithRuns) => Promise<OutboxMessage[]>): Promise<boolean | undefined> {
  return ctx.db.transaction().execute(async (trx) => {
    const free = await sql`SELECT 1 FROM tasks WHERE task_id = ${taskId} FOR UPDATE SKIP LOCKED`.execute(trx);
    if (free.rows.length === 0) return undefined;
    // read in a statement after the lock: the state every earlier holder committed
    const t = (await lockTask(trx, taskId))!;
    const messages = await fn(trx, t);
    await writeOutbox(trx, ctx.config.exchangePrefix, messages);
    return messages.length > 0;
  });
}
