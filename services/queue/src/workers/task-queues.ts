// Task queues, and the provisioner / worker-type views that Taskcluster synthesises from them
// (a task queue id is `<provisionerId>/<workerType>`). Only unexpired queues are visible.
import { sql, type Selectable } from 'kysely';
import type { Db } from '../db/database.js';
import type { TaskQueuesTable } from '../db/tables.js';
import { page } from '../http/paging.js';
import { splitQueueId } from '../tasks/status.js';
import { tokenKey } from './keyset.js';

type QueueRow = Selectable<TaskQueuesTable>;

const iso = (d: Date | string): string => new Date(d).toISOString();

export function taskQueueJson(r: QueueRow) {
  return {
    taskQueueId: r.task_queue_id,
    expires: iso(r.expires),
    lastDateActive: iso(r.last_date_active),
    description: r.description,
    stability: r.stability,
  };
}

export function workerTypeJson(r: QueueRow) {
  return {
    ...splitQueueId(r.task_queue_id),
    stability: r.stability,
    description: r.description,
    expires: iso(r.expires),
    lastDateActive: iso(r.last_date_active),
  };
}

export async function getTaskQueue(db: Db, taskQueueId: string, now: Date): Promise<QueueRow | undefined> {
  return db
    .selectFrom('task_queues')
    .selectAll()
    .where('task_queue_id', '=', taskQueueId)
    .where('expires', '>', now)
    .executeTakeFirst();
}

/** Unexpired queues by id; with `provisionerId`, only that provisioner's. */
export async function listTaskQueues(
  db: Db,
  now: Date,
  opts: { limit: number; continuationToken?: string; provisionerId?: string },
): Promise<{ rows: QueueRow[]; continuationToken?: string }> {
  const after = tokenKey(opts.continuationToken, ['text']);
  let q = db.selectFrom('task_queues').selectAll().where('expires', '>', now).orderBy('task_queue_id').limit(opts.limit + 1);
  // starts_with, not LIKE: `_` is a wildcard in LIKE and allowed in provisioner ids
  if (opts.provisionerId !== undefined) q = q.where(sql<boolean>`starts_with(task_queue_id, ${opts.provisionerId + '/'})`);
  if (after) q = q.where('task_queue_id', '>', after[0]!);
  return page(await q.execute(), opts.limit, (r) => [r.task_queue_id]);
}

export interface ProvisionerRow {
  provisioner_id: string;
  expires: Date;
  last_date_active: Date;
}

export function provisionerJson(r: ProvisionerRow) {
  // provisioners have no record of their own any more: stability and description are fixed
  return {
    provisionerId: r.provisioner_id,
    stability: 'experimental',
    description: '',
    expires: iso(r.expires),
    lastDateActive: iso(r.last_date_active),
    actions: [],
  };
}

function provisionerQuery(db: Db, now: Date) {
  const provisioner = sql<string>`split_part(task_queue_id, '/', 1)`;
  return db
    .selectFrom('task_queues')
    .select([
      provisioner.as('provisioner_id'),
      sql<Date>`max(expires)`.as('expires'),
      sql<Date>`max(last_date_active)`.as('last_date_active'),
    ])
    .where('expires', '>', now)
    .groupBy(provisioner)
    .orderBy(provisioner);
}

export async function getProvisioner(db: Db, provisionerId: string, now: Date): Promise<ProvisionerRow | undefined> {
  return provisionerQuery(db, now)
    .where(sql<boolean>`starts_with(task_queue_id, ${provisionerId + '/'})`)
    .executeTakeFirst();
}

export async function listProvisioners(
  db: Db,
  now: Date,
  opts: { limit: number; continuationToken?: string },
): Promise<{ rows: ProvisionerRow[]; continuationToken?: string }> {
  const after = tokenKey(opts.continuationToken, ['text']);
  let q = provisionerQuery(db, now).limit(opts.limit + 1);
  if (after) q = q.where(sql<boolean>`split_part(task_queue_id, '/', 1) > ${after[0]!}`);
  return page(await q.execute(), opts.limit, (r) => [r.provisioner_id]);
}
