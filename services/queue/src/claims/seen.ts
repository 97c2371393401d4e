// "Last seen" bookkeeping for task queues. Written at most once per interval per queue per
// process: claimWork is the hottest call and must not contend on one row.
import type { Ctx } from '../context.js';

const writeEveryMs = 10_000;
const lastWrite = new Map<string, number>();

export function markQueueSeen(ctx: Ctx, taskQueueId: string): void {
  const now = ctx.clock.now();
  const last = lastWrite.get(taskQueueId) ?? 0;
  if (now.getTime() - last < writeEveryMs) return;
  lastWrite.set(taskQueueId, now.getTime());
  const expires = new Date(now.getTime() + 24 * 3600 * 1000);
  ctx.db
    .insertInto('task_queues')
    .values({ task_queue_id: taskQueueId, expires, last_date_active: now })
    .onConflict((oc) => oc.column('task_queue_id').doUpdateSet({ expires, last_date_active: now }))
    .execute()
    .catch((err) => ctx.log.warn({ err, taskQueueId }, 'could not record task queue activity'));
}
