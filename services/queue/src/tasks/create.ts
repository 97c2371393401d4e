// createTask: validate, authorize, check times, then store the task, join its group, record its
// dependencies, schedule it when unblocked and write task-defined/pending, in one transaction:
// shared with other calls in flight (create-batch.ts) or, in the unusual cases, its own.
import { isDeepStrictEqual } from 'node:util';
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import { insertDependencies, lockDependencies } from '../deps/track.js';
import type { ApiRequest } from '../http/endpoint.js';
import { ApiError } from '../http/errors.js';
import { maxHeaderBytes } from '../http/server.js';
import { writeOutbox } from '../outbox/write.js';
import { addPendingRun } from '../runs/schedule.js';
import { batchedTask, submitBatched } from './create-batch.js';
import { newTaskMessages } from './new-task.js';
import { prioritiesAtOrAbove } from './priority.js';
import { toDefinition, toStatus, type TaskRow, type TaskStatus, loadTask } from './status.js';

const driftMs = 15 * 60 * 1000;
/** 3/4 of the header limit, less room for the certificate's other fields and the other headers. */
const maxTaskScopeBytes = Math.floor((maxHeaderBytes * 3) / 4) - 8 * 1024;
/** Larger tasks are created alone: a batch of 50 of them would make one statement of many MB. */
const maxBatchedTaskChars = 64 * 1024;

export interface CreateTaskBody {
  taskQueueId?: string;
  provisionerId?: string;
  workerType?: string;
  schedulerId: string;
  projectId: string;
  taskGroupId?: string;
  dependencies: string[];
  requires: string;
  routes: string[];
  priority: string;
  retries: number;
  created: string;
  deadline: string;
  expires?: string;
  scopes: string[];
  payload: Record<string, unknown>;
  metadata: Record<string, unknown>;
  tags: Record<string, string>;
  extra: Record<string, unknown>;
}

function queueIdOf(body: CreateTaskBody): string {
  const { taskQueueId, provisionerId, workerType } = body;
  if (provisionerId !== undefined || workerType !== undefined) {
    if (provisionerId === undefined || workerType === undefined) {
      throw new ApiError('InputError', 'provisionerId and workerType must be given together (or use taskQueueId)');
    }
    const legacy = `${provisionerId}/${workerType}`;
    if (taskQueueId !== undefined && taskQueueId !== legacy) {
      throw new ApiError('InputError', `taskQueueId ${taskQueueId} does not match provisionerId/workerType ${legacy}`);
    }
    return legacy;
  }
  if (taskQueueId === undefined) throw new ApiError('InputError', 'a task needs a taskQueueId (or provisionerId and workerType)');
  return taskQueueId;
}

function checkTimes(ctx: Ctx, created: Date, deadline: Date, expires: Date): void {
  const now = ctx.clock.now().getTime();
  // The schema's date-time format admits a few forms JavaScript cannot read (a leap second
  // `23:59:60`, an hour-only offset `+05`); they must not reach the database as NaN.
  const unreadable = Object.entries({ created, deadline, expires }).filter(([, d]) => Number.isNaN(d.getTime()));
  if (unreadable.length > 0) {
    throw new ApiError('InputError', `${unreadable.map(([k]) => k).join(', ')}: not a date-time this service can read; use RFC 3339 like 2025-01-31T12:00:00.000Z`);
  }
  const problems: string[] = [];
  if (Math.abs(created.getTime() - now) > driftMs) problems.push('created must be within 15 minutes of the current time');
  if (deadline < created) problems.push('deadline cannot be before created');
  if (deadline.getTime() < now) problems.push('deadline cannot be in the past');
  const maxMs = ctx.config.maxTaskDeadlineDays * 24 * 3600 * 1000;
  if (deadline.getTime() > now + maxMs + driftMs) {
    problems.push(`deadline cannot be more than ${ctx.config.maxTaskDeadlineDays} days into the future`);
  }
  if (expires < deadline) problems.push('expires cannot be before the deadline');
  if (problems.length > 0) throw new ApiError('InputError', problems.join('; '));
}

export async function createTask(req: ApiRequest<{ taskId: string }, CreateTaskBody>): Promise<{ status: TaskStatus }> {
  const { ctx } = req;
  const { taskId } = req.params;
  const body = req.body;
  const taskQueueId = queueIdOf(body);
  const [provisionerId, workerType] = taskQueueId.split('/') as [string, string];

  req.authorize({
    scopes: body.scopes,
    routes: body.routes,
    projectId: body.projectId,
    schedulerId: body.schedulerId,
    priorities: prioritiesAtOrAbove(body.priority),
    provisionerId,
    workerType,
  });

  const created = new Date(body.created);
  const deadline = new Date(body.deadline);
  const expires = body.expires ? new Date(body.expires) : new Date(deadline.getTime() + 365 * 24 * 3600 * 1000);
  checkTimes(ctx, created, deadline, expires);
  const badScope = body.scopes.find((s) => s.endsWith('**'));
  if (badScope) throw new ApiError('InputError', `scope ${badScope} ends with '**', which is not allowed`);
  // The claim credentials carry these scopes base64-encoded in a Hawk header; beyond this the
  // worker's requests would exceed the header limit and the task could never be worked on.
  const scopeBytes = Buffer.byteLength(JSON.stringify(body.scopes));
  if (scopeBytes > maxTaskScopeBytes) {
    throw new ApiError('InputError', `the task's scopes take ${scopeBytes} bytes; at most ${maxTaskScopeBytes} fit in its worker's credentials`);
  }

  const row: TaskRow = {
    task_id: taskId,
    task_queue_id: taskQueueId,
    scheduler_id: body.schedulerId,
    project_id: body.projectId,
    task_group_id: body.taskGroupId ?? taskId,
    dependencies: body.dependencies,
    requires: body.requires,
    routes: body.routes,
    priority: body.priority,
    retries: body.retries,
    retries_left: body.retries,
    created,
    deadline,
    expires,
    scopes: body.scopes,
    payload: body.payload,
    metadata: body.metadata,
    tags: body.tags,
    extra: body.extra,
  };

  // Tasks without dependencies join a shared transaction with the other calls in flight; a task
  // that depends on others locks them first (deps/track.ts), which stays a transaction of its own.
  if (row.dependencies.length === 0) {
    const item = batchedTask(ctx, row);
    if (item.json.length <= maxBatchedTaskChars) {
      const status = await submitBatched(ctx, item);
      if (status) return { status };
    }
  }
  return { status: await createAlone(ctx, row) };
}

/**
 * One task in a transaction of its own: a task with dependencies, a large one, and whatever the
 * batch left (an existing taskId, a group of another scheduler or sealed). The checks that answer
 * an idempotent repeat or a conflict are here, and only here.
 */
async function createAlone(ctx: Ctx, row: TaskRow): Promise<TaskStatus> {
  const { task_id: taskId, deadline, expires } = row;
  return ctx.db.transaction().execute(async (trx) => {
    const dep = { taskId, dependencies: row.dependencies, requires: row.requires, deadline, expires };
    const satisfied = await lockDependencies(trx, dep);

    const inserted = await trx
      .insertInto('tasks')
      .values({
        ...row,
        dependencies: JSON.stringify(row.dependencies),
        routes: JSON.stringify(row.routes),
        scopes: JSON.stringify(row.scopes),
        payload: JSON.stringify(row.payload),
        metadata: JSON.stringify(row.metadata),
        tags: JSON.stringify(row.tags),
        extra: JSON.stringify(row.extra),
      })
      .onConflict((oc) => oc.column('task_id').doNothing())
      .returning('task_id')
      .executeTakeFirst();
    if (!inserted) {
      const existing = (await loadTask(trx, taskId))!;
      // compared as stored: jsonb keeps what JSON keeps (-0 is 0, 1e400 is null)
      const asStored = JSON.parse(JSON.stringify(toDefinition(row))) as unknown;
      if (!isDeepStrictEqual(toDefinition(existing.task), asStored)) {
        throw new ApiError('RequestConflict', `taskId ${taskId} already used by another task with a different definition`, { taskId });
      }
      return toStatus(existing);
    }

    // Joins the group (created on first use): counts the task as unresolved and extends the
    // group's expiry, in one statement that also locks the group row. The checks come after it;
    // a failing one throws, and the rollback takes the task and the count back out.
    const group = await trx
      // the deadline resolver's row rides along: one round trip for both
      .with('deadline_row', (db) => db.insertInto('task_deadlines').values({ task_id: taskId, deadline }))
      .insertInto('task_groups')
      .values({ task_group_id: row.task_group_id, scheduler_id: row.scheduler_id, expires, sealed: null, unresolved: 1 })
      .onConflict((oc) =>
        oc.column('task_group_id').doUpdateSet({
          unresolved: sql`task_groups.unresolved + 1`,
          expires: sql`greatest(task_groups.expires, excluded.expires)`,
        }),
      )
      .returning(['scheduler_id', 'sealed'])
      .executeTakeFirstOrThrow();
    if (group.scheduler_id !== row.scheduler_id) {
      throw new ApiError(
        'RequestConflict',
        `taskGroupId ${row.task_group_id} contains tasks with schedulerId ${group.scheduler_id}; all tasks in a group must share one schedulerId`,
        { taskGroupId: row.task_group_id },
      );
    }
    if (group.sealed) {
      throw new ApiError('RequestConflict', `taskGroupId ${row.task_group_id} is sealed; no tasks can be added to it`, { taskGroupId: row.task_group_id });
    }

    const blocked = await insertDependencies(trx, dep, satisfied);
    const run = blocked ? undefined : await addPendingRun(ctx, trx, { task: row, runs: [] }, 'scheduled');
    const { messages, status } = newTaskMessages(row, run);
    await writeOutbox(trx, ctx.config.exchangePrefix, messages);
    return status;
  });
}
