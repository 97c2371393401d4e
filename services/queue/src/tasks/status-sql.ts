// The task status structure built inside a statement, for a statement that must write a message
// about rows it changes itself (the claim and create batches: claims/take.ts,
// tasks/create-batch.ts), where toStatus cannot run between the change and the write without
// another round trip. It is toStatus (status.ts) in SQL: test/status-sql.test.ts keeps the two
// equal, field by field, for every run state. The definition likewise (toDefinition), so a claim
// reads its answer back ready to send. They are json, not jsonb: built once and sent as text, they
// need no parsed form (see migration 0702).
import { sql, type RawBuilder } from 'kysely';

/** The columns of the row a table alias names, as references: `columnsOf('t')('task_id')` is t.task_id. */
export function columnsOf(alias: string): (column: string) => RawBuilder<unknown> {
  return (column) => sql.ref(`${alias}.${column}`);
}

/** A timestamp as toISOString writes it: UTC, milliseconds (truncated, as a JS Date holds them). */
export function isoSql(ts: RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`to_char(${ts} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
}

/** splitQueueId in SQL: the provisionerId and workerType of a task_queue_id expression. */
export function splitQueueIdSql(queue: RawBuilder<unknown>): { provisionerId: RawBuilder<string>; workerType: RawBuilder<string> } {
  return { provisionerId: sql<string>`split_part(${queue}, '/', 1)`, workerType: sql<string>`substr(${queue}, strpos(${queue}, '/') + 1)` };
}

/** runJson of the runs row `r` (a table alias): absent fields are left out, as runJson does. */
export function runJsonSql(r: string): RawBuilder<unknown> {
  const c = columnsOf(r);
  // json_strip_nulls drops the keys whose value is null: runJson's `if (...)` per optional field
  return sql`json_strip_nulls(json_build_object(
    'runId', ${c('run_id')}, 'state', ${c('state')}, 'reasonCreated', ${c('reason_created')},
    'reasonResolved', nullif(${c('reason_resolved')}, ''), 'workerGroup', nullif(${c('worker_group')}, ''),
    'workerId', nullif(${c('worker_id')}, ''), 'takenUntil', ${isoSql(c('taken_until'))}, 'scheduled', ${isoSql(c('scheduled'))},
    'started', ${isoSql(c('started'))}, 'resolved', ${isoSql(c('resolved'))}))`;
}

/**
 * toStatus of the tasks row `t` (a table alias) with `runs`, a json array of runJsonSql objects
 * in run order or null for none (json_agg of no rows); it may be a subquery, evaluated once.
 */
export function statusSql(t: string, runs: RawBuilder<unknown>): RawBuilder<unknown> {
  const c = columnsOf(t);
  const queue = c('task_queue_id');
  const { provisionerId, workerType } = splitQueueIdSql(queue);
  return sql`(SELECT json_build_object(
    'taskId', ${c('task_id')}, 'provisionerId', ${provisionerId}, 'workerType', ${workerType}, 'taskQueueId', ${queue},
    'schedulerId', ${c('scheduler_id')}, 'projectId', ${c('project_id')}, 'taskGroupId', ${c('task_group_id')},
    'deadline', ${isoSql(c('deadline'))}, 'expires', ${isoSql(c('expires'))}, 'retriesLeft', ${c('retries_left')},
    'state', coalesce(runs_of.r -> -1 ->> 'state', 'unscheduled'), 'runs', coalesce(runs_of.r, '[]'::json))
    FROM (SELECT ${runs} AS r) runs_of)`;
}

/** toDefinition of the tasks row `t` (a table alias): the definition as `task` and a claim return it. */
export function definitionSql(t: string): RawBuilder<unknown> {
  const c = columnsOf(t);
  const queue = c('task_queue_id');
  const { provisionerId, workerType } = splitQueueIdSql(queue);
  return sql`json_build_object(
    'provisionerId', ${provisionerId}, 'workerType', ${workerType}, 'taskQueueId', ${queue}, 'schedulerId', ${c('scheduler_id')}, 'projectId', ${c('project_id')},
    'taskGroupId', ${c('task_group_id')}, 'dependencies', ${c('dependencies')}, 'requires', ${c('requires')},
    'routes', ${c('routes')}, 'priority', ${c('priority')}, 'retries', ${c('retries')},
    'created', ${isoSql(c('created'))}, 'deadline', ${isoSql(c('deadline'))}, 'expires', ${isoSql(c('expires'))},
    'scopes', ${c('scopes')}, 'payload', ${c('payload')}, 'metadata', ${c('metadata')}, 'tags', ${c('tags')},
    'extra', ${c('extra')})`;
}
