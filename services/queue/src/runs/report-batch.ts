// reportCompleted / reportFailed served in batches: the reports that arrive together share one
// transaction, and each step is one set-based statement for the whole batch (db/batcher.ts).
//
// Per batch, two messages (db/batch-transaction.ts, db/pipeline.ts): first BEGIN, the task locks
// (in task_id order), and one statement that locks their pending rows and their groups' rows and
// reads tasks, runs, group counts and which tasks have dependents waiting on them; then, once each
// report is decided with the same checkReport as the single path, one statement that resolves the
// runs and moves each group's counter by the batch's sum, the outbox write and COMMIT. Two round
// trips for the whole batch (more only when dependents are waiting), where each report alone
// takes 9.
//
// Lock order (runs/README.md): all task rows before anything else, sorted, so two batches, or a
// batch and a single-task transition, never wait for each other in a cycle; then pending rows,
// then the group rows, also sorted. Dependents are taken SKIP LOCKED (deps/resolve.ts), so they may
// come after our own locks.
import { sql } from 'kysely';
import type { TaskStatus } from '@conveyor/schemas';
import type { Ctx } from '../context.js';
import { Batcher, batcherPerService, type Outcome } from '../db/batcher.js';
import { batchTransaction, type BatchResult } from '../db/batch-transaction.js';
import { template } from '../db/template.js';
import { resolveDependents } from '../deps/resolve.js';
import { ApiError } from '../http/errors.js';
import type { OutboxMessage } from '../outbox/messages.js';
import { outboxStatement } from '../outbox/write.js';
import { fromRowWithRuns, taskWithRunsColumns, toStatus, type TaskRowWithRuns, type TaskWithRuns } from '../tasks/status.js';
import { groupResolvedMessages, type GroupCount } from './after-resolved.js';
import { markResolved, resolvedMessage, type Resolution } from './resolve.js';
import { checkReport } from './run-checks.js';
import { taskNotFound } from './with-task.js';

export interface ReportItem {
  taskId: string;
  runId: number;
  /** Exceptions, which may add a retry run, take the single path (api.ts). */
  res: Resolution & { state: 'completed' | 'failed'; retry?: undefined };
}

export interface ReportAnswer {
  status: TaskStatus;
}

interface Resolved {
  t: TaskWithRuns;
  runId: number;
  /** task-completed / task-failed, built from the state this resolution committed. */
  message: OutboxMessage;
}

// Two lanes: this box has 2 cores and a batch is mostly waiting on round trips, so one batch can
// gather and encode while the other waits on PostgreSQL, and a batch held up by a row lock (a task
// another transition holds) does not stall every report. More lanes would need more of the batch
// pool (8 connections, one per lane of the four batchers; app.ts) and split the waiting reports
// into smaller batches, which is what loses the sharing. 32 per batch takes every report waiting
// at 50 concurrent lifecycles (about 17 reports in flight), and bounds a batch's statements, its
// lock hold time and the one-by-one rerun after a failed batch.
export const reportBatcher = batcherPerService((ctx: Ctx) => new Batcher<ReportItem, ReportAnswer>((items) => serveReports(ctx, items), { name: 'report', maxBatch: 32, lanes: 2 }));

export function submitReport(ctx: Ctx, item: ReportItem): Promise<ReportAnswer> {
  return reportBatcher(ctx).submit(item);
}

export async function serveReports(ctx: Ctx, items: ReportItem[]): Promise<Array<Outcome<ReportAnswer>>> {
  const ids = [...new Set(items.map((i) => i.taskId))].sort();
  return batchTransaction(ctx.batchDb, ids, lockedState({ ids }), async (trx, rows): Promise<BatchResult<Array<Outcome<ReportAnswer>>>> => {
    const { tasks, unblocks, groups } = fromLockedRows(rows);

    const now = ctx.clock.now();
    const resolved: Resolved[] = [];
    // in arrival order, against the state the earlier items left: a repeat or a conflicting report
    // of a task resolved earlier in this batch answers as it would have after that one committed
    const outcomes = items.map((item): Outcome<ReportAnswer> => {
      const t = tasks.get(item.taskId);
      if (!t) return { ok: false, error: taskNotFound(item.taskId) };
      try {
        if (checkReport(t, item.runId, item.res) === 'resolve') {
          markResolved(t.runs[item.runId]!, item.res, now);
          // the message reports the state this answer reports: one status object for both
          const status = toStatus(t);
          resolved.push({ t, runId: item.runId, message: resolvedMessage(t, item.runId, status) });
          return { ok: true, value: { status } };
        }
      } catch (error) {
        if (error instanceof ApiError) return { ok: false, error };
        throw error;
      }
      return { ok: true, value: { status: toStatus(t) } };
    });
    if (resolved.length === 0) return { value: outcomes };

    const messages: OutboxMessage[] = [];
    for (const { t, runId, message } of resolved) {
      messages.push(message);
      // before the group rows are written, as afterResolved does; most tasks have no dependent waiting
      const waiting = unblocks.get(t.task.task_id);
      if (waiting === 'resolution' || (waiting === 'completion' && t.runs[runId]!.state === 'completed')) {
        messages.push(...(await resolveDependents(ctx, trx, t)));
      }
    }
    const { statement, changed } = writeResolutions(resolved, groups, now);
    messages.push(...groupResolvedMessages(changed));
    return { value: outcomes, last: [statement, outboxStatement(ctx.config.exchangePrefix, messages)] };
  });
}

type LockedRow = TaskRowWithRuns & {
  waiting_resolution: boolean;
  waiting_completion: boolean;
  /** The task's group row (null if it is gone), locked. */
  group_scheduler_id: string | null;
  group_expires: Date | null;
  group_sealed: Date | null;
  group_unresolved: number | null;
};

/**
 * The statement sent with BEGIN and the task locks: it locks the tasks' pending rows (lockTask's
 * second step: it waits out a claim in flight) and their groups' rows (in task_group_id order),
 * and reads the tasks with their runs, their group's counts, and whether they have unsatisfied
 * dependent edges. It runs after the task locks were granted, so it sees every edge that a
 * createTask (holding our task FOR SHARE) committed before us. A claim that commits while we wait
 * is not in this statement's snapshot, but that changes no decision: a task with a pending run
 * has a later run than any running one, so every report of it answers 409 or as a repeat, from a
 * state the task really was in after our lock.
 */
const lockedState = template<{ ids: string[] }, LockedRow>(
  ({ ids }) =>
    // `held` runs because `grp` reads it, and `grp` because the select list does (a CTE nobody
    // reads does not run); FOR UPDATE under ORDER BY locks in that order
    sql`
    WITH held AS (SELECT task_id FROM pending WHERE task_id = ANY(${ids}::text[]) ORDER BY task_id, run_id FOR UPDATE),
    grp AS MATERIALIZED (
      SELECT g.task_group_id, g.scheduler_id, g.expires, g.sealed, g.unresolved FROM task_groups g
      WHERE g.task_group_id IN (SELECT task_group_id FROM tasks WHERE task_id = ANY(${ids}::text[]))
        AND (SELECT count(*) FROM held) >= 0
      ORDER BY g.task_group_id FOR UPDATE)
    SELECT ${taskWithRunsColumns},
      EXISTS (SELECT 1 FROM task_dependencies d
        WHERE d.required_task_id = t.task_id AND d.requires = 'all-resolved' AND NOT d.satisfied) AS waiting_resolution,
      EXISTS (SELECT 1 FROM task_dependencies d
        WHERE d.required_task_id = t.task_id AND d.requires = 'all-completed' AND NOT d.satisfied) AS waiting_completion,
      grp.scheduler_id AS group_scheduler_id, grp.expires AS group_expires, grp.sealed AS group_sealed,
      grp.unresolved AS group_unresolved
    FROM tasks t LEFT JOIN grp ON grp.task_group_id = t.task_group_id
    WHERE t.task_id = ANY(${ids}::text[])`,
);

/**
 * The locked tasks with their runs; which of them have unsatisfied dependent edges ('resolution'
 * when any resolution satisfies some of them (all-resolved), 'completion' when only completing
 * does); and their groups as locked.
 */
function fromLockedRows(rows: LockedRow[]) {
  const tasks = new Map<string, TaskWithRuns>();
  const unblocks = new Map<string, 'completion' | 'resolution'>();
  const groups = new Map<string, GroupCount>();
  for (const { waiting_resolution, waiting_completion, group_scheduler_id, group_expires, group_sealed, group_unresolved, ...row } of rows) {
    tasks.set(row.task_id, fromRowWithRuns(row));
    if (waiting_resolution) unblocks.set(row.task_id, 'resolution');
    else if (waiting_completion) unblocks.set(row.task_id, 'completion');
    if (group_scheduler_id !== null) {
      groups.set(row.task_group_id, {
        task_group_id: row.task_group_id, scheduler_id: group_scheduler_id, expires: group_expires!, sealed: group_sealed, unresolved: group_unresolved!,
      });
    }
  }
  return { tasks, unblocks, groups };
}

/** The SQLSTATE the resolutions abort with should a run have left state running under the task lock. */
const runMovedMeanwhile = 'CV002';

interface Resolutions {
  taskIds: string[];
  runIds: number[];
  states: string[];
  reasons: Array<string | null>;
  now: Date;
  groupIds: string[];
  /** per group, its tasks resolved here */
  counts: number[];
  /** runs to resolve */
  n: number;
}

// the task locks make the abort impossible; should it ever happen, roll back rather than overwrite
const resolutionsStatement = template<Resolutions>((v) => sql`
  WITH v AS (
    SELECT * FROM unnest(${v.taskIds}::text[], ${v.runIds}::int[], ${v.states}::text[], ${v.reasons}::text[]) AS v (task_id, run_id, state, reason)),
  done AS (
    UPDATE runs r SET state = v.state, reason_resolved = v.reason, resolved = ${v.now}::timestamptz
    FROM v WHERE r.task_id = v.task_id AND r.run_id = v.run_id AND r.state = 'running'
    RETURNING 1),
  counted AS (
    UPDATE task_groups g SET unresolved = g.unresolved - d.n
    FROM unnest(${v.groupIds}::text[], ${v.counts}::int[]) AS d (task_group_id, n)
    WHERE g.task_group_id = ANY(${v.groupIds}::text[]) AND g.task_group_id = d.task_group_id)
  SELECT CASE WHEN count(*) <> ${v.n}::int
    THEN conveyor_abort(${runMovedMeanwhile}, 'a run left state running under the task lock') END
  FROM done`);

/**
 * One statement: the runs resolved (still running, as checked under the locks), and each group's
 * counter moved once by the number of its tasks resolved here — so a group that reaches zero
 * announces it once. The group rows were locked with the tasks. Returns the statement, and the
 * groups as it leaves them.
 */
function writeResolutions(resolved: Resolved[], groups: Map<string, GroupCount>, now: Date) {
  const perGroup = new Map<string, number>();
  for (const { t } of resolved) perGroup.set(t.task.task_group_id, (perGroup.get(t.task.task_group_id) ?? 0) + 1);
  const changed = [...perGroup].flatMap(([id, n]) => {
    const g = groups.get(id);
    return g ? [{ ...g, unresolved: g.unresolved - n }] : [];
  });
  const groupIds = changed.map((g) => g.task_group_id);
  const runs = resolved.map(({ t, runId }) => t.runs[runId]!);
  const statement = resolutionsStatement({
    taskIds: runs.map((r) => r.task_id), runIds: runs.map((r) => r.run_id), states: runs.map((r) => r.state),
    reasons: runs.map((r) => r.reason_resolved), now, groupIds, counts: groupIds.map((id) => perGroup.get(id)!), n: runs.length,
  });
  return { statement, changed };
}
