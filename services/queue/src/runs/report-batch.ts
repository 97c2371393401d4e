// reportCompleted / reportFailed served in batches: the reports that arrive together share one
// transaction, and each step is one set-based statement for the whole batch (db/batcher.ts).
//
// Per batch: BEGIN with the task locks (one message, in task_id order: db/batch-transaction.ts); lock
// their pending rows, read tasks and runs and find which have dependents waiting on them (one
// statement); decide each report with the same checkReport as the single path, then one statement
// resolves the runs, marks first resolutions and moves each group's counter by the batch's sum,
// and one writes the outbox, sent with COMMIT. That is 4 round trips for the whole batch, where
// each report alone takes 9.
//
// Lock order (runs/README.md): all task rows before anything else, sorted, so two batches, or a
// batch and a single-task transition, never wait for each other in a cycle; then pending rows,
// runs, and last the group rows, also sorted. Dependents are taken SKIP LOCKED (deps/resolve.ts),
// so they may come after our own locks.
import { sql } from 'kysely';
import type { TaskStatus } from '@conveyor/schemas';
import type { Ctx } from '../context.js';
import { Batcher, batcherPerService, type Outcome } from '../db/batcher.js';
import { batchTransaction, type BatchResult } from '../db/batch-transaction.js';
import type { Trx } from '../db/database.js';
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
  return batchTransaction(ctx.batchDb, ids, async (trx): Promise<BatchResult<Array<Outcome<ReportAnswer>>>> => {
    const { tasks, unblocks } = await loadLocked(trx, ids);

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
          resolved.push({ t, runId: item.runId, message: resolvedMessage(t, item.runId) });
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
      // before the group rows, as afterResolved does; most tasks have no dependent waiting
      const waiting = unblocks.get(t.task.task_id);
      if (waiting === 'resolution' || (waiting === 'completion' && t.runs[runId]!.state === 'completed')) {
        messages.push(...(await resolveDependents(ctx, trx, t)));
      }
    }
    const groups = await writeResolutions(trx, resolved, now);
    messages.push(...groupResolvedMessages(groups));
    return { value: outcomes, last: outboxStatement(ctx.config.exchangePrefix, messages, 'literal') };
  });
}

/**
 * The locked tasks with their runs, and which of them have unsatisfied dependent edges:
 * 'resolution' when any resolution satisfies some of them (all-resolved), 'completion' when only
 * completing does. One statement, begun after the task locks were granted, so it sees every edge
 * that a createTask (holding our task FOR SHARE) committed before us. It also locks the tasks'
 * pending rows (lockTask's second step: it waits out a claim in flight). A claim that commits while
 * we wait is not in this statement's snapshot, but that changes no decision: a task with a pending
 * run has a later run than any running one, so every report of it answers 409 or as a repeat, from
 * a state the task really was in after our lock.
 */
async function loadLocked(trx: Trx, taskIds: string[]) {
  const tasks = new Map<string, TaskWithRuns>();
  const unblocks = new Map<string, 'completion' | 'resolution'>();
  // `held` runs because the WHERE clause reads it (a CTE nobody reads does not run)
  const { rows } = await sql<TaskRowWithRuns & { waiting_resolution: boolean; waiting_completion: boolean }>`
    WITH held AS (SELECT task_id FROM pending WHERE task_id = ANY(${taskIds}::text[]) ORDER BY task_id, run_id FOR UPDATE)
    SELECT ${taskWithRunsColumns},
      EXISTS (SELECT 1 FROM task_dependencies d
        WHERE d.required_task_id = t.task_id AND d.requires = 'all-resolved' AND NOT d.satisfied) AS waiting_resolution,
      EXISTS (SELECT 1 FROM task_dependencies d
        WHERE d.required_task_id = t.task_id AND d.requires = 'all-completed' AND NOT d.satisfied) AS waiting_completion
    FROM tasks t WHERE t.task_id = ANY(${taskIds}::text[]) AND (SELECT count(*) FROM held) >= 0`.execute(trx);
  for (const { waiting_resolution, waiting_completion, ...row } of rows) {
    tasks.set(row.task_id, fromRowWithRuns(row));
    if (waiting_resolution) unblocks.set(row.task_id, 'resolution');
    else if (waiting_completion) unblocks.set(row.task_id, 'completion');
  }
  return { tasks, unblocks };
}

/**
 * One statement: the runs resolved (still running, as checked under the locks), the first
 * resolution of each task marked (ever_resolved), and each group's counter moved once by the
 * number of its tasks resolved here — so a group that reaches zero announces it once. Group rows
 * are locked in task_group_id order before they are changed. Returns the groups as changed.
 */
async function writeResolutions(trx: Trx, resolved: Resolved[], now: Date): Promise<GroupCount[]> {
  const perGroup = new Map<string, number>();
  const firsts: string[] = [];
  for (const { t } of resolved) {
    perGroup.set(t.task.task_group_id, (perGroup.get(t.task.task_group_id) ?? 0) + 1);
    if (!t.task.ever_resolved) firsts.push(t.task.task_id);
    t.task.ever_resolved = true;
  }
  const groupIds = [...perGroup.keys()].sort();
  const runs = resolved.map(({ t, runId }) => t.runs[runId]!);
  const { rows } = await sql<GroupCount & { runs_resolved: number; task_group_id: string | null }>`
    WITH v AS (
      SELECT * FROM unnest(${runs.map((r) => r.task_id)}::text[], ${runs.map((r) => r.run_id)}::int[],
        ${runs.map((r) => r.state)}::text[], ${runs.map((r) => r.reason_resolved)}::text[]) AS v (task_id, run_id, state, reason)),
    done AS (
      UPDATE runs r SET state = v.state, reason_resolved = v.reason, resolved = ${now}
      FROM v WHERE r.task_id = v.task_id AND r.run_id = v.run_id AND r.state = 'running'
      RETURNING 1),
    marked AS (UPDATE tasks SET ever_resolved = true WHERE task_id = ANY(${firsts}::text[])),
    locked AS (SELECT task_group_id FROM task_groups WHERE task_group_id = ANY(${groupIds}::text[]) ORDER BY task_group_id FOR UPDATE),
    changed AS (
      UPDATE task_groups g SET unresolved = g.unresolved - d.n
      FROM locked JOIN unnest(${groupIds}::text[], ${groupIds.map((id) => perGroup.get(id)!)}::int[]) AS d (task_group_id, n) USING (task_group_id)
      WHERE g.task_group_id = locked.task_group_id
      RETURNING g.task_group_id, g.scheduler_id, g.expires, g.sealed, g.unresolved)
    SELECT (SELECT count(*)::int FROM done) AS runs_resolved, c.* FROM (SELECT 1) AS one LEFT JOIN changed c ON true`.execute(trx);
  // the task locks make this impossible; should it ever happen, roll back rather than overwrite
  if (rows[0]!.runs_resolved !== runs.length) {
    throw new Error(`${runs.length - rows[0]!.runs_resolved} of ${runs.length} runs left state running under the task lock`);
  }
  return rows.filter((g): g is typeof g & { task_group_id: string } => g.task_group_id !== null);
}
