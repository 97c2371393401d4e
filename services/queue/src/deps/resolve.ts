// Unblocking dependents when a task resolves.
//
// The transaction that resolves a task handles its first batch of dependents itself, so a small
// fan-out is pending the moment the resolution commits. Anything past that batch is left in
// `resolved_tasks_queue` for the dependency loop, cut into ranges of one batch each, which the
// loop's workers (and replicas) take in parallel, one short transaction per batch: a task with
// 10,000 dependents never holds one long transaction.
//
// Why each dependent is locked before it is checked: two dependencies A and B of D may resolve at
// once. Each satisfies its own edge, then asks "has D an unsatisfied edge left?". Without a common
// lock both can see the other's edge still unsatisfied (neither has committed) and D is never
// scheduled. Holding D's row lock while asking, in a statement begun after the lock was granted,
// serialises the two: the second sees the first's committed edge.
//
// Lock order: the resolving transaction already holds its task's lock, so it must not wait for a
// dependent (D's holder may be resolving D and want one of D's dependents that we hold). It takes
// the dependents with SKIP LOCKED and leaves the edges of any it could not lock unsatisfied, for
// the loop to redo. The loop holds no other task lock, so it waits, taking dependents in sorted
// order like every other multi-task lock.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import type { OutboxMessage } from '../outbox/messages.js';
import { taskState, type TaskWithRuns } from '../tasks/status.js';
import { scheduleMany } from './schedule-many.js';

export const dependencyChannel = 'conveyor_dependencies';

export interface DependentsCursor {
  taskId: string;
  /** Resolved as completed: satisfies all-completed edges too, not only all-resolved ones. */
  completed: boolean;
  /** Continue with dependents after this id ('' from the start). */
  after: string;
  /** Up to and including this dependent; undefined: to the end. */
  until?: string;
}

/** At most this many batches of dependents are cut into ranges up front; the last range is open. */
const maxRanges = 64;

export interface BatchResult {
  messages: OutboxMessage[];
  /** Edges looked at. */
  examined: number;
  scheduled: number;
  /** Where to continue, or undefined when every dependent has been handled. */
  next?: string;
}

export async function resolveDependents(ctx: Ctx, trx: Trx, t: TaskWithRuns): Promise<OutboxMessage[]> {
  const cursor: DependentsCursor = { taskId: t.task.task_id, completed: taskState(t.runs) === 'completed', after: '' };
  const batch = await resolveDependentsBatch(ctx, trx, cursor, { wait: false });
  if (batch.next !== undefined) await enqueueRest(ctx, trx, { ...cursor, after: batch.next });
  return batch.messages;
}

/**
 * Leaves the rest of a task's dependents to the dependency loop, one row per batch-sized range so
 * several workers can share them, and wakes the loop at commit.
 */
async function enqueueRest(ctx: Ctx, trx: Trx, c: DependentsCursor): Promise<void> {
  const limit = ctx.config.dependencyBatchSize;
  // every limit-th pending edge ends a range: one scan of the index, bounded by maxRanges
  const ends = await sql<{ dependent_task_id: string }>`
    SELECT dependent_task_id FROM (
      SELECT dependent_task_id, row_number() OVER (ORDER BY dependent_task_id) AS n FROM (
        SELECT dependent_task_id FROM task_dependencies
        WHERE required_task_id = ${c.taskId} AND dependent_task_id > ${c.after} AND NOT satisfied
          ${c.completed ? sql`` : sql`AND requires = 'all-resolved'`}
        ORDER BY dependent_task_id LIMIT ${limit * maxRanges}) pending_edges) numbered
    WHERE n % ${limit} = 0 ORDER BY dependent_task_id`.execute(trx);
  const bounds = [c.after, ...ends.rows.map((r) => r.dependent_task_id)];
  await trx
    .insertInto('resolved_tasks_queue')
    .values(bounds.map((after, i) => ({ task_id: c.taskId, completed: c.completed, after_dependent: after, until_dependent: bounds[i + 1] ?? null })))
    .execute();
  await sql`SELECT pg_notify(${dependencyChannel}, '')`.execute(trx);
}

/**
 * Satisfies the next batch of the task's unsatisfied edges that its resolution satisfies, and
 * schedules each dependent thereby unblocked. `wait: false` skips dependents locked by others and
 * reports where to come back for them.
 */
export async function resolveDependentsBatch(
  ctx: Ctx,
  trx: Trx,
  c: DependentsCursor,
  opts: { wait: boolean },
): Promise<BatchResult> {
  const limit = ctx.config.dependencyBatchSize;
  // Only edges this resolution satisfies matter: satisfied ones were handled when they became so.
  const edges = await sql<{ dependent_task_id: string }>`
    SELECT dependent_task_id FROM task_dependencies
    WHERE required_task_id = ${c.taskId} AND dependent_task_id > ${c.after} AND NOT satisfied
      ${c.until !== undefined ? sql`AND dependent_task_id <= ${c.until}` : sql``}
      ${c.completed ? sql`` : sql`AND requires = 'all-resolved'`}
    ORDER BY dependent_task_id
    LIMIT ${limit + 1}`.execute(trx);
  if (edges.rows.length === 0) return { messages: [], examined: 0, scheduled: 0 };
  const ids = edges.rows.slice(0, limit).map((e) => e.dependent_task_id);
  let next = edges.rows.length > limit ? ids[ids.length - 1] : undefined;

  const locked = await sql<{ task_id: string }>`
    SELECT task_id FROM tasks WHERE task_id = ANY(${ids}) ORDER BY task_id
    FOR UPDATE ${opts.wait ? sql`` : sql`SKIP LOCKED`}`.execute(trx);
  const lockedIds = new Set(locked.rows.map((r) => r.task_id));
  let satisfy = ids;
  if (!opts.wait && lockedIds.size < ids.length) {
    // tell a dependent held by someone else from an edge whose dependent no longer exists
    const held = new Set(
      (await trx.selectFrom('tasks').select('task_id').where(sql<boolean>`task_id = ANY(${ids.filter((id) => !lockedIds.has(id))})`).execute()).map(
        (r) => r.task_id,
      ),
    );
    if (held.size > 0) {
      const firstHeld = ids.findIndex((id) => held.has(id));
      next = firstHeld === 0 ? c.after : ids[firstHeld - 1];
      satisfy = ids.filter((id) => !held.has(id));
    }
  }
  if (satisfy.length > 0) {
    await sql`
      UPDATE task_dependencies SET satisfied = true
      WHERE required_task_id = ${c.taskId} AND dependent_task_id = ANY(${satisfy})`.execute(trx);
  }
  const candidates = satisfy.filter((id) => lockedIds.has(id));
  if (candidates.length === 0) return { messages: [], examined: ids.length, scheduled: 0, next };

  // a new statement, after the locks: sees every edge satisfied by transactions that held them
  const ready = await trx
    .selectFrom('tasks as t')
    .selectAll('t')
    .where(sql<boolean>`t.task_id = ANY(${candidates}) AND t.deadline > ${ctx.clock.now()}
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.task_id = t.task_id)
      AND NOT EXISTS (SELECT 1 FROM task_dependencies d WHERE d.dependent_task_id = t.task_id AND NOT d.satisfied)`)
    .orderBy('t.task_id')
    .execute();
  // no runs, as just checked under their locks
  const tasks = ready.map((task) => ({ task, runs: [] }));
  const messages = await scheduleMany(ctx, trx, tasks);
  return { messages, examined: ids.length, scheduled: tasks.length, next };
}
