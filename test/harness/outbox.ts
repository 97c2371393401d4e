// Reading what the queue committed to the outbox.
import { sql } from 'kysely';
import type { Db } from '../../services/queue/src/db/database.js';

export interface OutboxRow {
  id: string;
  exchange: string;
  routing_key: string;
  cc: string[];
  body: any;
}

// Filtered in SQL: test files that create thousands of tasks call this once per task.
export async function outboxRows(db: Db, filter: { taskId?: string; exchange?: string } = {}): Promise<OutboxRow[]> {
  const exchange = filter.exchange === undefined ? sql`true` : sql`right(exchange, ${filter.exchange.length + 1}) = ${'/' + filter.exchange}`;
  const task = filter.taskId === undefined
    ? sql`true`
    : sql`split_part(routing_key, '.', 2) = ${filter.taskId} AND cardinality(string_to_array(routing_key, '.')) = 10`;
  const rows = await sql<OutboxRow>`
    SELECT id, exchange, routing_key, cc, body FROM outbox WHERE ${exchange} AND ${task} ORDER BY id`.execute(db);
  return rows.rows;
}
