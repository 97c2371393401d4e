// Worker records: what claimWork writes (claims/claim.ts: recent tasks, last active), plus
// quarantine and explicit declaration. A worker whose record expired is hidden unless it is
// quarantined: a quarantine must stay visible so someone can lift it.
import { sql, type Selectable } from 'kysely';
import type { Db } from '../db/database.js';
import type { WorkersTable } from '../db/tables.js';
import { page } from '../http/paging.js';
import { splitQueueId } from '../tasks/status.js';
import { tokenKey } from './keyset.js';

export type WorkerRow = Selectable<WorkersTable>;

export interface WorkerKey {
  taskQueueId: string;
  workerGroup: string;
  workerId: string;
}

const dayMs = 24 * 3600 * 1000;
const iso = (d: Date | string): string => new Date(d).toISOString();

function visible(now: Date) {
  return sql<boolean>`(expires > ${now} OR quarantine_until > ${now})`;
}

export function workerJson(r: WorkerRow) {
  return {
    ...splitQueueId(r.task_queue_id),
    workerGroup: r.worker_group,
    workerId: r.worker_id,
    recentTasks: r.recent_tasks,
    expires: iso(r.expires),
    firstClaim: iso(r.first_claim),
    ...(r.last_date_active ? { lastDateActive: iso(r.last_date_active) } : {}),
    ...(r.quarantine_until ? { quarantineUntil: iso(r.quarantine_until) } : {}),
    quarantineDetails: r.quarantine_details,
    actions: [],
  };
}

export function workerListItem(r: WorkerRow) {
  const latest = r.recent_tasks[r.recent_tasks.length - 1];
  return {
    workerGroup: r.worker_group,
    workerId: r.worker_id,
    ...(r.quarantine_until ? { quarantineUntil: iso(r.quarantine_until) } : {}),
    firstClaim: iso(r.first_claim),
    ...(r.last_date_active ? { lastDateActive: iso(r.last_date_active) } : {}),
    ...(latest ? { latestTask: latest } : {}),
  };
}

export async function getWorker(db: Db, key: WorkerKey, now: Date): Promise<WorkerRow | undefined> {
  return db
    .selectFrom('workers')
    .selectAll()
    .where('task_queue_id', '=', key.taskQueueId)
    .where('worker_group', '=', key.workerGroup)
    .where('worker_id', '=', key.workerId)
    .where(visible(now))
    .executeTakeFirst();
}

/** Visible workers of a queue by (workerGroup, workerId); `quarantined` filters on quarantine now. */
export async function listWorkers(
  db: Db,
  taskQueueId: string,
  now: Date,
  opts: { limit: number; continuationToken?: string; quarantined?: boolean },
): Promise<{ rows: WorkerRow[]; continuationToken?: string }> {
  const after = tokenKey(opts.continuationToken, ['text', 'text']);
  let q = db
    .selectFrom('workers')
    .selectAll()
    .where('task_queue_id', '=', taskQueueId)
    .where(visible(now))
    .orderBy('worker_group')
    .orderBy('worker_id')
    .limit(opts.limit + 1);
  if (opts.quarantined === true) q = q.where('quarantine_until', '>', now);
  if (opts.quarantined === false) q = q.where((eb) => eb.or([eb('quarantine_until', 'is', null), eb('quarantine_until', '<=', now)]));
  if (after) q = q.where(sql<boolean>`(worker_group, worker_id) > (${after[0]!}, ${after[1]!})`);
  return page(await q.execute(), opts.limit, (r) => [r.worker_group, r.worker_id]);
}

/**
 * Sets the quarantine end (a past time lifts it), appends the change to the history and keeps the
 * record for at least a day. Undefined when the worker has no record.
 */
export async function quarantineWorker(
  db: Db,
  key: WorkerKey,
  now: Date,
  change: { clientId: string; quarantineUntil: Date; quarantineInfo: string },
): Promise<WorkerRow | undefined> {
  const detail = JSON.stringify([
    {
      clientId: change.clientId,
      updatedAt: now.toISOString(),
      quarantineUntil: change.quarantineUntil.toISOString(),
      quarantineInfo: change.quarantineInfo,
    },
  ]);
  return db
    .updateTable('workers')
    .set({
      quarantine_until: change.quarantineUntil,
      quarantine_details: sql`quarantine_details || ${detail}::jsonb`,
      expires: sql`greatest(expires, ${new Date(now.getTime() + dayMs)})`,
    })
    .where('task_queue_id', '=', key.taskQueueId)
    .where('worker_group', '=', key.workerGroup)
    .where('worker_id', '=', key.workerId)
    .returningAll()
    .executeTakeFirst();
}

/** Creates or extends the queue and the worker; neither expiry ever moves backwards. */
export async function declareWorker(db: Db, key: WorkerKey, now: Date, expires: Date): Promise<WorkerRow> {
  return db.transaction().execute(async (trx) => {
    await trx
      .insertInto('task_queues')
      .values({ task_queue_id: key.taskQueueId, expires, last_date_active: now })
      .onConflict((oc) => oc.column('task_queue_id').doUpdateSet({ expires: sql`greatest(task_queues.expires, excluded.expires)` }))
      .execute();
    return trx
      .insertInto('workers')
      .values({ task_queue_id: key.taskQueueId, worker_group: key.workerGroup, worker_id: key.workerId, expires, first_claim: now })
      .onConflict((oc) =>
        oc.columns(['task_queue_id', 'worker_group', 'worker_id']).doUpdateSet({ expires: sql`greatest(workers.expires, excluded.expires)` }),
      )
      .returningAll()
      .executeTakeFirstOrThrow();
  });
}
