// createTask for many tasks in one transaction: concurrent calls of tasks without dependencies are
// gathered by a Batcher and stored with one set-based statement that also writes their outbox rows
// (task-defined and task-pending, built in SQL from the rows it inserts, as the claim's are:
// tasks/status-sql.ts; test/status-sql.test.ts keeps them equal to newTaskMessages').
// The statement is its own (implicit) transaction, so a batch of N tasks is one round trip and one
// commit, where a task alone takes 6 round trips.
//
// The batch stores only the plain case: a new task joining a group that is new, or has the same
// schedulerId and is not sealed. Every other item (its taskId already exists, its group belongs to
// another scheduler or is sealed, it repeats a taskId or claims a group for another scheduler
// earlier in the same batch) is stored by nothing here and answered `undefined`: its caller runs it
// alone (create.ts), after this batch has committed, where the checks and their 200s and 409s live.
import { exchanges } from '@conveyor/pulse';
import { sql, type RawBuilder } from 'kysely';
import type { Ctx } from '../context.js';
import { Batcher, batcherPerService, type Outcome } from '../db/batcher.js';
import { template } from '../db/template.js';
import { routesCcSql, routingKeySql, taskKeyValuesSql } from '../outbox/messages-sql.js';
import { outboxXidWith } from '../outbox/write.js';
import { pendingChannel, pendingRunRow } from '../runs/schedule.js';
import { priorityNumber } from './priority.js';
import { runJsonSql, statusSql } from './status-sql.js';
import { toStatus, type TaskRow, type TaskStatus } from './status.js';

export interface BatchedTask {
  row: TaskRow;
  /** The row, its first run and its `pending` priority as one JSON object: the statement's input. */
  json: string;
  /** The answer once stored. */
  status: TaskStatus;
}

/** Everything of a batched create that needs no database, done per request before it queues. */
export function batchedTask(ctx: Ctx, row: TaskRow): BatchedTask {
  const run = pendingRunRow(row.task_id, 0, 'scheduled', ctx.clock.now());
  // the statement's columns in one literal of a fixed shape: JSON.stringify's fast path, where
  // spreading the row and the run into one object made a slow dictionary of ~30 keys
  const json = JSON.stringify({
    task_id: row.task_id, task_queue_id: row.task_queue_id, scheduler_id: row.scheduler_id, project_id: row.project_id,
    task_group_id: row.task_group_id, dependencies: row.dependencies, requires: row.requires, routes: row.routes,
    priority: row.priority, retries: row.retries, retries_left: row.retries_left, created: row.created, deadline: row.deadline,
    expires: row.expires, scopes: row.scopes, payload: row.payload, metadata: row.metadata, tags: row.tags, extra: row.extra,
    run_id: run.run_id, state: run.state, reason_created: run.reason_created, scheduled: run.scheduled,
    priority_number: priorityNumber(row.priority),
  });
  return { row, json, status: toStatus({ task: row, runs: [run] }) };
}

// Two lanes: while one batch waits for its commit (the WAL flush), the next one gathers and runs,
// so PostgreSQL never idles between batches; more lanes split the same calls into smaller batches
// (more round trips and commits) and need more of the batch pool, which the other batchers share
// (8 connections, fewer with a smaller DB_POOL_SIZE: a lane holds one connection and never asks
// for a second, so a small pool makes batches wait, not deadlock). 50 bounds a batch's statement
// (create.ts keeps large tasks out) and its latency: at the bench's 50 concurrent lifecycles
// about a third of them are in createTask at a time, so batches stay well below it.
export const createBatchOptions = { name: 'createTask', maxBatch: 50, lanes: 2 };
export const createBatcher = batcherPerService((ctx: Ctx) => new Batcher((items: BatchedTask[]) => storeBatch(ctx, items), createBatchOptions));

/** Resolves to the task's status once stored, or to `undefined` when it must be created alone. */
export function submitBatched(ctx: Ctx, item: BatchedTask): Promise<TaskStatus | undefined> {
  return createBatcher(ctx).submit(item);
}

/** The SQLSTATE the statement aborts with when a group refused tasks it had already inserted. */
const groupTakenMeanwhile = 'CV001';

async function storeBatch(ctx: Ctx, items: BatchedTask[]): Promise<Array<Outcome<TaskStatus | undefined>>> {
  const candidates = plainCandidates(items);
  let stored: Set<string>;
  try {
    const { rows } = await ctx.batchDb.executeQuery(
      storeStatement({ prefix: ctx.config.exchangePrefix, tasks: `[${candidates.map((i) => i.json).join(',')}]` }),
    );
    stored = new Set(rows.map((r) => r.task_id));
  } catch (err) {
    // The statement read the groups from its snapshot; a group taken by another scheduler or sealed
    // since then refused its tasks in the upsert, after they were inserted. Rare: the statement
    // undid itself, and every item goes the single path.
    if ((err as { code?: string }).code !== groupTakenMeanwhile) throw err;
    stored = new Set();
  }
  return items.map((item) => ({ ok: true, value: candidates.includes(item) && stored.has(item.row.task_id) ? item.status : undefined }));
}

/**
 * The items the statement may store: the first of each taskId, and in each group only the tasks
 * with the group's first schedulerId (one upsert cannot give a group row two schedulers; the
 * others get their 409 from the single path once the group is committed).
 */
function plainCandidates(items: BatchedTask[]): BatchedTask[] {
  const taskIds = new Set<string>();
  const schedulers = new Map<string, string>();
  return items.filter(({ row }) => {
    const scheduler = schedulers.get(row.task_group_id) ?? row.scheduler_id;
    if (taskIds.has(row.task_id) || scheduler !== row.scheduler_id) return false;
    taskIds.add(row.task_id);
    schedulers.set(row.task_group_id, scheduler);
    return true;
  });
}

/**
 * One statement for the whole batch (its text does not depend on the batch size, so it stays one
 * prepared statement): the tasks, their groups, deadline rows, runs, `pending` rows, the outbox rows
 * of the tasks stored, and one NOTIFY per task queue for waiting claimWork calls. Returns each task
 * stored. Should a group refuse a task the statement inserted, the statement aborts (CV001) and
 * nothing is stored. Lock order as in the single path: the new task rows (by taskId), then the
 * groups (by taskGroupId, so two batches in flight cannot deadlock); runs and `pending` are rows of
 * our own new tasks, which no one else can lock.
 */
const storeStatement = template<{ prefix: string; tasks: string }, { task_id: string }>(({ prefix, tasks }) => sql`
    WITH i AS (
      SELECT * FROM ROWS FROM (json_to_recordset(${tasks}::json) AS (
        task_id text, task_queue_id text, scheduler_id text, project_id text, task_group_id text,
        dependencies jsonb, requires text, routes jsonb, priority text, retries integer, retries_left integer,
        created timestamptz, deadline timestamptz, expires timestamptz, scopes jsonb, payload jsonb,
        metadata jsonb, tags jsonb, extra jsonb,
        run_id integer, state text, reason_created text, scheduled timestamptz, priority_number integer
      )) WITH ORDINALITY AS i),
    t AS (
      INSERT INTO tasks (task_id, task_queue_id, scheduler_id, project_id, task_group_id, dependencies, requires,
        routes, priority, retries, retries_left, created, deadline, expires, scopes, payload, metadata, tags, extra)
      SELECT i.task_id, i.task_queue_id, i.scheduler_id, i.project_id, i.task_group_id, i.dependencies, i.requires,
        i.routes, i.priority, i.retries, i.retries_left, i.created, i.deadline, i.expires, i.scopes, i.payload, i.metadata,
        i.tags, i.extra
      FROM i
      -- a group of another scheduler, or sealed: the task is left to the single path (a 409)
      LEFT JOIN LATERAL (
        -- LIMIT keeps this a lookup by primary key per task, whatever the planner thinks of the batch's size
        SELECT scheduler_id, sealed FROM task_groups WHERE task_group_id = i.task_group_id LIMIT 1) existing ON true
      WHERE existing.scheduler_id IS NULL OR (existing.scheduler_id = i.scheduler_id AND existing.sealed IS NULL)
      ORDER BY i.task_id
      ON CONFLICT (task_id) DO NOTHING
      RETURNING task_id),
    g AS (
      -- one row per group: a multi-row upsert may not touch a row twice
      INSERT INTO task_groups (task_group_id, scheduler_id, expires, sealed, unresolved)
      SELECT i.task_group_id, i.scheduler_id, max(i.expires), NULL, count(*)
      FROM t JOIN i USING (task_id)
      GROUP BY i.task_group_id, i.scheduler_id
      ORDER BY i.task_group_id
      ON CONFLICT (task_group_id) DO UPDATE SET
        unresolved = task_groups.unresolved + excluded.unresolved,
        expires = greatest(task_groups.expires, excluded.expires)
      WHERE task_groups.scheduler_id = excluded.scheduler_id AND task_groups.sealed IS NULL
      RETURNING task_group_id),
    ok AS (SELECT i.* FROM t JOIN i USING (task_id) JOIN g USING (task_group_id)),
    d AS (INSERT INTO task_deadlines (task_id, deadline) SELECT task_id, deadline FROM ok),
    r AS (
      INSERT INTO runs (task_id, run_id, state, reason_created, scheduled)
      SELECT task_id, run_id, state, reason_created, scheduled FROM ok
      RETURNING *),
    p AS (
      -- in request order: pending.seq is the FIFO order claimWork serves
      INSERT INTO pending (task_queue_id, priority, task_id, run_id)
      SELECT task_queue_id, priority_number, task_id, run_id FROM ok ORDER BY ordinality),
    woken AS (SELECT count(pg_notify(${pendingChannel}, q)) FROM (SELECT DISTINCT task_queue_id AS q FROM ok) x),
    ${newTaskMessagesWith(prefix)}
    SELECT t.task_id,
      CASE WHEN g.task_group_id IS NULL THEN conveyor_abort(${groupTakenMeanwhile}, 'a task group changed hands during the batch') END
    FROM woken, t JOIN i USING (task_id) LEFT JOIN g USING (task_group_id)`);

const definedKey = routingKeySql(exchanges.taskDefined, taskKeyValuesSql('ok'));
const pendingKey = routingKeySql(exchanges.taskPending, { ...taskKeyValuesSql('ok'), runId: sql.ref('r.run_id') });

/**
 * WITH entries that write task-defined and task-pending of every task in `ok` (its first run in
 * `r`), in request order: newTaskMessages (new-task.ts) in SQL. The xid is taken before the first
 * outbox id is drawn (outbox/write.ts); the inserts above took it already, this keeps the rule
 * explicit.
 */
function newTaskMessagesWith(exchangePrefix: RawBuilder<unknown>) {
  const tags = sql`json_build_object('tags', ok.tags)`;
  return sql`
    ${outboxXidWith('ok')},
    outbox_rows AS (
      INSERT INTO outbox (exchange, routing_key, cc, body)
      SELECT ${exchangePrefix}::text || m.exchange, m.routing_key, ${routesCcSql(sql.ref('ok.routes'))}, m.body
      FROM outbox_xid, ok JOIN r USING (task_id) CROSS JOIN LATERAL (VALUES
        (1, ${exchanges.taskDefined.name}::text, ${definedKey},
          json_build_object('version', 1, 'status', ${statusSql('ok', sql`NULL::json`)}, 'task', ${tags})),
        (2, ${exchanges.taskPending.name}::text, ${pendingKey},
          json_build_object('version', 1, 'status', ${statusSql('ok', sql`json_build_array(${runJsonSql('r')})`)},
            'runId', r.run_id, 'task', ${tags}))
      ) AS m (k, exchange, routing_key, body)
      -- outbox ids are drawn in this order (the relay publishes in id order)
      ORDER BY ok.ordinality, m.k)`;
}
