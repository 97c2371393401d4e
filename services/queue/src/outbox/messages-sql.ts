// taskMessage (messages.ts) as SQL expressions, for a statement that writes the messages of rows
// it changes itself (the claim and create batches: claims/finish.ts, tasks/create-batch.ts). The
// routing key is generated from the same exchange catalogue that buildRoutingKey reads;
// test/status-sql.test.ts checks those outbox rows against what taskMessage builds.
import { buildRoutingKey, type ExchangeDefinition } from '@conveyor/pulse';
import { sql, type RawBuilder } from 'kysely';
import { columnsOf, splitQueueIdSql } from '../tasks/status-sql.js';

/**
 * buildRoutingKey over SQL values: a word with no value (null or '') is `_`. The values come
 * from stored rows whose fields the API validated on input (slugids, identifiers), so the word
 * checks buildRoutingKey makes cannot fail here and are not repeated.
 */
export function routingKeySql(exchange: ExchangeDefinition, values: Record<string, RawBuilder<unknown>>): RawBuilder<string> {
  // fail where the catalogue and the caller disagree, as buildRoutingKey would for every message
  buildRoutingKey(exchange, Object.fromEntries(Object.keys(values).map((k) => [k, 'x'])));
  const words = exchange.routingKey.map((w) => {
    if (w.constant) return sql.lit(w.constant);
    const v = values[w.name];
    return v === undefined ? sql.lit('_') : sql`coalesce(nullif((${v})::text, ''), '_')`;
  });
  return sql<string>`concat_ws('.', ${sql.join(words)})`;
}

/** The routing-key words every task message takes from its task: `t` is an alias of a tasks-like row. */
export function taskKeyValuesSql(t: string): Record<string, RawBuilder<unknown>> {
  const c = columnsOf(t);
  return {
    taskId: c('task_id'),
    ...splitQueueIdSql(c('task_queue_id')),
    schedulerId: c('scheduler_id'),
    taskGroupId: c('task_group_id'),
  };
}

/** The CC list of a task message: `route.<r>` for each of the task's routes (a jsonb array), in order. */
export function routesCcSql(routes: RawBuilder<unknown>): RawBuilder<string[]> {
  return sql<string[]>`ARRAY(SELECT 'route.' || r.route FROM jsonb_array_elements_text(${routes}) WITH ORDINALITY AS r (route, n) ORDER BY r.n)`;
}
