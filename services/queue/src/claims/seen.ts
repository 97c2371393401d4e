// "Last seen" bookkeeping for task queues and workers. Written at most once per interval per key per
// process: claimWork is the hottest call and must not contend on one row.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';

const writeEveryMs = 10_000;
// worker ids are often one per machine, so the map is dropped when it grows, not kept forever
const maxKeys = 50_000;
const lastWrite = new Map<string, number>();

function due(key: string, now: Date): boolean {
  const last = lastWrite.get(key) ?? 0;
  if (now.getTime() - last < writeEveryMs) return false;
  if (lastWrite.size >= maxKeys) lastWrite.clear();
  lastWrite.set(key, now.getTime());
  return true;
}

export function markQueueSeen(ctx: Ctx, taskQueueId: string): void {
  const now = ctx.clock.now();
  if (!due(taskQueueId, now)) return;
  const expires = new Date(now.getTime() + 24 * 3600 * 1000);
  ctx.db
    .insertInto('task_queues')
    .values({ task_queue_id: taskQueueId, expires, last_date_active: now })
    // greatest(): declareWorker may have set a later expiry, which must not move backwards
    .onConflict((oc) =>
      oc.column('task_queue_id').doUpdateSet({ expires: sql`greatest(task_queues.expires, excluded.expires)`, last_date_active: now }),
    )
    .execute()
    .catch((err) => ctx.log.warn({ err, taskQueueId }, 'could not record task queue activity'));
}

/** A worker that polls is listed (and can be quarantined) before it has claimed anything. */
export function markWorkerSeen(ctx: Ctx, who: { taskQueueId: string; workerGroup: string; workerId: string }): void {
  const now = ctx.clock.now();
  if (!due(`${who.taskQueueId}\0${who.workerGroup}\0${who.workerId}`, now)) return;
  const expires = new Date(now.getTime() + 24 * 3600 * 1000);
  ctx.db
    .insertInto('workers')
    .values({ task_queue_id: who.taskQueueId, worker_group: who.workerGroup, worker_id: who.workerId, expires, first_claim: now, last_date_active: now })
    .onConflict((oc) =>
      oc.columns(['task_queue_id', 'worker_group', 'worker_id'])
        .doUpdateSet({ expires: sql`greatest(workers.expires, excluded.expires)`, last_date_active: now }),
    )
    .execute()
    .catch((err) => ctx.log.warn({ err, ...who }, 'could not record worker activity'));
}
