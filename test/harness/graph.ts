// Helpers for the dependency, group and resolver tests: build task graphs, drive their tasks to a
// resolution through taskcluster-client, and wait for conditions with a deadline.
import { sql } from 'kysely';
import type { Ctx } from '../../services/queue/src/context.js';
import type { Db } from '../../services/queue/src/db/database.js';
import { resolveRun } from '../../services/queue/src/runs/resolve.js';
import { withLockedTask } from '../../services/queue/src/runs/with-task.js';
import type { TestQueue } from './service.js';
import { slugid, taskDef } from './tasks.js';

/** Polls `check` until it returns a truthy value; throws after `timeoutMs`. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Runs `work` over `items` with at most `n` in flight. */
export async function inParallel<T, R>(items: T[], n: number, work: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await work(items[i]!, i);
      }
    }),
  );
  return out;
}

/** Creates a task and returns its id. */
export async function create(q: TestQueue, overrides: Record<string, unknown> = {}, taskId = slugid()): Promise<string> {
  await q.queue().createTask(taskId, taskDef(overrides));
  return taskId;
}

/**
 * Test fixture standing in for many createTask calls: copies `template` (an unscheduled task made by
 * createTask) under each item's taskId with the item's dependencies, writing what createTask
 * writes for a blocked task — the task row, its deadline row, unsatisfied edges, the group's count.
 * Thousands of dependents in well under a second, where createTask one by one takes a minute on a
 * loaded machine.
 */
export async function cloneUnscheduled(db: Db, template: string, items: Array<{ taskId: string; dependencies: string[] }>): Promise<void> {
  const ids = items.map((i) => i.taskId);
  const deps = items.map((i) => JSON.stringify(i.dependencies));
  const edgeFrom = items.flatMap((i) => i.dependencies);
  const edgeTo = items.flatMap((i) => i.dependencies.map(() => i.taskId));
  await db.transaction().execute(async (trx) => {
    await sql`
      INSERT INTO tasks (task_id, task_queue_id, scheduler_id, project_id, task_group_id, dependencies, requires, routes,
        priority, retries, retries_left, created, deadline, expires, scopes, payload, metadata, tags, extra)
      SELECT n.id, t.task_queue_id, t.scheduler_id, t.project_id, t.task_group_id, n.deps::jsonb, t.requires, t.routes,
        t.priority, t.retries, t.retries_left, t.created, t.deadline, t.expires, t.scopes, t.payload, t.metadata, t.tags, t.extra
      FROM unnest(${ids}::text[], ${deps}::text[]) AS n(id, deps), tasks t WHERE t.task_id = ${template}`.execute(trx);
    await sql`
      INSERT INTO task_deadlines (task_id, deadline)
      SELECT n.id, t.deadline FROM unnest(${ids}::text[]) AS n(id), tasks t WHERE t.task_id = ${template}`.execute(trx);
    await sql`
      INSERT INTO task_dependencies (required_task_id, dependent_task_id, requires, satisfied, expires)
      SELECT e.a, e.b, t.requires, false, t.expires
      FROM unnest(${edgeFrom}::text[], ${edgeTo}::text[]) AS e(a, b), tasks t WHERE t.task_id = ${template}`.execute(trx);
    await sql`
      UPDATE task_groups SET unresolved = unresolved + ${ids.length}
      WHERE task_group_id = (SELECT task_group_id FROM tasks WHERE task_id = ${template})`.execute(trx);
  });
}

/** Claims the one pending task of a queue (which must be `taskId` if given) and reports it. */
export async function claimAndResolve(
  q: TestQueue,
  taskQueueId: string,
  how: 'completed' | 'failed' | 'exception' = 'completed',
  opts: { taskId?: string; workerId?: string } = {},
): Promise<{ taskId: string; runId: number }> {
  const claim = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: opts.workerId ?? 'w', tasks: 1 });
  if (claim.tasks.length !== 1) throw new Error(`expected a task to claim on ${taskQueueId}, got ${claim.tasks.length}`);
  const c = claim.tasks[0];
  if (opts.taskId && c.status.taskId !== opts.taskId) throw new Error(`claimed ${c.status.taskId}, expected ${opts.taskId}`);
  const worker = q.queue({ credentials: c.credentials });
  if (how === 'completed') await worker.reportCompleted(c.status.taskId, c.runId);
  else if (how === 'failed') await worker.reportFailed(c.status.taskId, c.runId);
  else await worker.reportException(c.status.taskId, c.runId, { reason: 'malformed-payload' });
  return { taskId: c.status.taskId, runId: c.runId };
}

/**
 * cancelTask for the one pending run of a queue, without HTTP: the state machine's own transition
 * (runs/resolve.ts) in one transaction, for tests that resolve a thousand tasks one after the
 * other. Throws unless exactly one run of the queue is pending.
 */
export async function cancelOnlyPending(ctx: Ctx, taskQueueId: string): Promise<string> {
  const rows = await sql<{ task_id: string; run_id: number }>`
    SELECT task_id, run_id FROM pending WHERE task_queue_id = ${taskQueueId} LIMIT 2`.execute(ctx.db);
  if (rows.rows.length !== 1) throw new Error(`${rows.rows.length} runs pending on ${taskQueueId}, expected exactly one`);
  const { task_id, run_id } = rows.rows[0]!;
  await withLockedTask(ctx, task_id, async (trx, t, emit) => {
    emit(...(await resolveRun(ctx, trx, t, run_id, { state: 'exception', reason: 'canceled' })).messages);
  });
  return task_id;
}

/** The state of each task (the last run's, or unscheduled), read from the database. */
export async function states(db: Db, taskIds: string[]): Promise<Map<string, string>> {
  const rows = await sql<{ task_id: string; state: string }>`
    SELECT t.task_id, coalesce((SELECT r.state FROM runs r WHERE r.task_id = t.task_id ORDER BY r.run_id DESC LIMIT 1), 'unscheduled') AS state
    FROM tasks t WHERE t.task_id = ANY(${taskIds})`.execute(db);
  return new Map(rows.rows.map((r) => [r.task_id, r.state]));
}

/** How many of the tasks are in `state`. */
export async function countIn(db: Db, taskIds: string[], state: string): Promise<number> {
  return [...(await states(db, taskIds)).values()].filter((s) => s === state).length;
}

/** Outbox rows of one exchange, grouped by task id (routing-key word 2). */
export async function messagesByTask(db: Db, exchange: string): Promise<Map<string, any[]>> {
  const rows = await sql<{ routing_key: string; body: any }>`
    SELECT routing_key, body FROM outbox WHERE exchange LIKE ${'%/' + exchange} ORDER BY id`.execute(db);
  const map = new Map<string, any[]>();
  for (const r of rows.rows) {
    const id = r.routing_key.split('.')[1]!;
    map.set(id, [...(map.get(id) ?? []), r.body]);
  }
  return map;
}
