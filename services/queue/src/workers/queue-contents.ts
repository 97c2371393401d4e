// What a task queue holds: the counts autoscalers poll, and the pending and claimed runs with their
// task definitions. Pending runs come from the small `pending` table; claimed runs are the running
// runs (taken_until in the future) of the queue's tasks.
import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { page } from '../http/paging.js';
import { toDefinition, type TaskRow } from '../tasks/status.js';
import { fromMicros, micros, tokenKey } from './keyset.js';

export async function pendingCount(db: Db, taskQueueId: string): Promise<number> {
  const row = await db
    .selectFrom('pending')
    .select(sql<number>`count(*)::int`.as('n'))
    .where('task_queue_id', '=', taskQueueId)
    .executeTakeFirstOrThrow();
  return row.n;
}

/** Running runs of the queue whose claim has not run out (an expired claim is about to be retried). */
export async function claimedCount(db: Db, taskQueueId: string, now: Date): Promise<number> {
  const row = await db
    .selectFrom('runs as r')
    .innerJoin('tasks as t', 't.task_id', 'r.task_id')
    .select(sql<number>`count(*)::int`.as('n'))
    .where('r.state', '=', 'running')
    .where('r.taken_until', '>', now)
    .where('t.task_queue_id', '=', taskQueueId)
    .executeTakeFirstOrThrow();
  return row.n;
}

async function definitions(db: Db, taskIds: string[]): Promise<Map<string, TaskRow>> {
  if (taskIds.length === 0) return new Map();
  const rows = await db.selectFrom('tasks').selectAll().where('task_id', 'in', taskIds).execute();
  return new Map(rows.map((t) => [t.task_id, t]));
}

export interface PendingItem {
  taskId: string;
  runId: number;
  inserted: string;
  task: Record<string, unknown>;
}

/** Pending runs in insertion order (not claim order), keyset on (inserted, task_id). */
export async function listPending(
  db: Db,
  taskQueueId: string,
  opts: { limit: number; continuationToken?: string },
): Promise<{ tasks: PendingItem[]; continuationToken?: string }> {
  const after = tokenKey(opts.continuationToken, ['micros', 'text']);
  let q = db
    .selectFrom('pending')
    .select(['task_id', 'run_id', 'inserted', micros('inserted').as('inserted_us')])
    .where('task_queue_id', '=', taskQueueId)
    .orderBy('inserted')
    .orderBy('task_id')
    .limit(opts.limit + 1);
  if (after) q = q.where(sql<boolean>`(inserted, task_id) > (${fromMicros(after[0]!)}, ${after[1]!})`);
  const { rows, continuationToken } = page(await q.execute(), opts.limit, (r) => [r.inserted_us, r.task_id]);
  // definitions in a second read: joining first would fetch every pending task of the queue
  // before the sort and limit
  const tasks = await definitions(db, rows.map((r) => r.task_id));
  const items: PendingItem[] = [];
  for (const r of rows) {
    const task = tasks.get(r.task_id);
    // a task expired and deleted between the two reads has nothing left to show
    if (!task) continue;
    items.push({ taskId: r.task_id, runId: r.run_id, inserted: new Date(r.inserted).toISOString(), task: toDefinition(task) });
  }
  return continuationToken ? { tasks: items, continuationToken } : { tasks: items };
}

export interface ClaimedItem {
  taskId: string;
  runId: number;
  workerGroup: string;
  workerId: string;
  claimed: string;
  task: Record<string, unknown>;
}

/** Claimed runs by claim time, keyset on (started, task_id). */
export async function listClaimed(
  db: Db,
  taskQueueId: string,
  now: Date,
  opts: { limit: number; continuationToken?: string },
): Promise<{ tasks: ClaimedItem[]; continuationToken?: string }> {
  const after = tokenKey(opts.continuationToken, ['micros', 'text']);
  let q = db
    .selectFrom('runs as r')
    .innerJoin('tasks as t', 't.task_id', 'r.task_id')
    // the join is needed to find the queue's runs, so it brings the definitions along
    .selectAll('t')
    .select(['r.run_id', 'r.worker_group', 'r.worker_id', 'r.started', micros('r.started').as('started_us')])
    .where('r.state', '=', 'running')
    .where('r.taken_until', '>', now)
    .where('t.task_queue_id', '=', taskQueueId)
    .orderBy('r.started')
    .orderBy('r.task_id')
    .limit(opts.limit + 1);
  if (after) q = q.where(sql<boolean>`(r.started, r.task_id) > (${fromMicros(after[0]!)}, ${after[1]!})`);
  const { rows, continuationToken } = page(await q.execute(), opts.limit, (r) => [r.started_us, r.task_id]);
  const items: ClaimedItem[] = rows.map((r) => ({
    taskId: r.task_id,
    runId: r.run_id,
    workerGroup: r.worker_group!,
    workerId: r.worker_id!,
    claimed: new Date(r.started!).toISOString(),
    task: toDefinition(r),
  }));
  return continuationToken ? { tasks: items, continuationToken } : { tasks: items };
}
