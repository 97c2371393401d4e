// Reading tasks and runs, and shaping them into the Taskcluster task definition and status.
import { sql } from 'kysely';
import type { Db, Trx } from '../db/database.js';
import type { RunsTable, TasksTable } from '../db/tables.js';
import type { Selectable } from 'kysely';
import type { TaskRun, TaskStatus } from '@conveyor/schemas';

export type TaskRow = Selectable<TasksTable>;
export type RunRow = Selectable<RunsTable>;

export interface TaskWithRuns {
  task: TaskRow;
  runs: RunRow[];
}

export const resolvedStates = ['completed', 'failed', 'exception'] as const;

export function isResolvedState(state: string): boolean {
  return (resolvedStates as readonly string[]).includes(state);
}

export function taskState(runs: RunRow[]): string {
  return runs.length === 0 ? 'unscheduled' : runs[runs.length - 1]!.state;
}

export function lastRun(runs: RunRow[]): RunRow | undefined {
  return runs[runs.length - 1];
}

async function loadRuns(db: Db | Trx, taskIds: string[]): Promise<Map<string, RunRow[]>> {
  const map = new Map<string, RunRow[]>();
  if (taskIds.length === 0) return map;
  const rows = await db.selectFrom('runs').selectAll().where('task_id', 'in', taskIds).orderBy('task_id').orderBy('run_id').execute();
  for (const r of rows) {
    let list = map.get(r.task_id);
    if (!list) map.set(r.task_id, (list = []));
    list.push(r);
  }
  return map;
}

export async function loadTask(db: Db | Trx, taskId: string): Promise<TaskWithRuns | undefined> {
  return (await loadTasks(db, [taskId]))[0];
}

/**
 * Lock the task row: every transition of a task serialises here. claimWork alone moves runs
 * (pending → running) without this lock; it locks the `pending` row first. So the task's pending
 * rows are locked next: that waits out a claim in flight and keeps later ones away, and the runs
 * read after it stay true until commit.
 */
export async function lockTask(trx: Trx, taskId: string): Promise<TaskWithRuns | undefined> {
  const task = await trx.selectFrom('tasks').selectAll().where('task_id', '=', taskId).forUpdate().executeTakeFirst();
  if (!task) return undefined;
  await trx.selectFrom('pending').select('run_id').where('task_id', '=', taskId).forUpdate().execute();
  const runs = (await loadRuns(trx, [taskId])).get(taskId) ?? [];
  return { task, runs };
}

// Runs travel as json inside the task's row; json has no timestamps, so these come back as Dates.
const runTimestamps = ['taken_until', 'scheduled', 'started', 'resolved'] as const;

function runFromJson(r: Record<string, unknown>): RunRow {
  const run = { ...r } as Record<string, unknown>;
  for (const k of runTimestamps) if (typeof run[k] === 'string') run[k] = new Date(run[k] as string);
  return run as unknown as RunRow;
}

/** The select list of a `tasks t` row with its runs as json in `runs_json` (see TaskRowWithRuns). */
export const taskWithRunsColumns = sql`t.*, coalesce((SELECT json_agg(r ORDER BY r.run_id) FROM runs r WHERE r.task_id = t.task_id), '[]') AS runs_json`;

/**
 * Tasks and their runs in one statement (one round trip; the text does not depend on the number
 * of ids, so it stays one prepared statement). Not for transitions: they lock first (lockTask).
 */
export async function loadTasks(db: Db | Trx, taskIds: string[]): Promise<TaskWithRuns[]> {
  if (taskIds.length === 0) return [];
  const { rows } = await sql<TaskRowWithRuns>`
    SELECT ${taskWithRunsColumns} FROM tasks t WHERE t.task_id = ANY(${taskIds}::text[])`.execute(db);
  return rows.map(fromRowWithRuns);
}

/** A `tasks` row with its runs as json in `runs_json`: what loadTasks (and claims/take.ts) read. */
export type TaskRowWithRuns = TaskRow & { runs_json: Array<Record<string, unknown>> };

export function fromRowWithRuns({ runs_json, ...task }: TaskRowWithRuns): TaskWithRuns {
  return { task, runs: runs_json.map(runFromJson) };
}

const iso = (d: Date | string | null | undefined): string | undefined =>
  d == null ? undefined : new Date(d).toISOString();

export function splitQueueId(taskQueueId: string): { provisionerId: string; workerType: string } {
  const i = taskQueueId.indexOf('/');
  return { provisionerId: taskQueueId.slice(0, i), workerType: taskQueueId.slice(i + 1) };
}

export function runJson(r: RunRow): TaskRun {
  // the database holds only values the state machine writes, which are the schema's enums
  const run: TaskRun = {
    runId: r.run_id,
    state: r.state as TaskRun['state'],
    reasonCreated: r.reason_created as TaskRun['reasonCreated'],
    scheduled: '',
  };
  if (r.reason_resolved) run.reasonResolved = r.reason_resolved as TaskRun['reasonResolved'];
  if (r.worker_group) run.workerGroup = r.worker_group;
  if (r.worker_id) run.workerId = r.worker_id;
  if (r.taken_until) run.takenUntil = iso(r.taken_until);
  run.scheduled = iso(r.scheduled)!;
  if (r.started) run.started = iso(r.started);
  if (r.resolved) run.resolved = iso(r.resolved);
  return run;
}

// The status structure's type is generated from schemas/v1/task-status.json (one source of truth).
export type { TaskStatus } from '@conveyor/schemas';

export function toStatus({ task, runs }: TaskWithRuns): TaskStatus {
  return {
    taskId: task.task_id,
    ...splitQueueId(task.task_queue_id),
    taskQueueId: task.task_queue_id,
    schedulerId: task.scheduler_id,
    projectId: task.project_id,
    taskGroupId: task.task_group_id,
    deadline: iso(task.deadline)!,
    expires: iso(task.expires)!,
    retriesLeft: task.retries_left,
    state: taskState(runs) as TaskStatus['state'],
    runs: runs.map(runJson),
  };
}

/** The definition as `task` returns it: every default filled, both queue id forms. */
export function toDefinition(task: TaskRow): Record<string, unknown> {
  return {
    ...splitQueueId(task.task_queue_id),
    taskQueueId: task.task_queue_id,
    schedulerId: task.scheduler_id,
    projectId: task.project_id,
    taskGroupId: task.task_group_id,
    dependencies: task.dependencies,
    requires: task.requires,
    routes: task.routes,
    priority: task.priority,
    retries: task.retries,
    created: iso(task.created),
    deadline: iso(task.deadline),
    expires: iso(task.expires),
    scopes: task.scopes,
    payload: task.payload,
    metadata: task.metadata,
    tags: task.tags,
    extra: task.extra,
  };
}

/** Highest run id + 1 as the next run's id. */
export function nextRunId(runs: RunRow[]): number {
  return runs.length;
}

export const nowSql = sql`now()`;
