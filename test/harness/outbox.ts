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

export async function outboxRows(db: Db, filter: { taskId?: string; exchange?: string } = {}): Promise<OutboxRow[]> {
  const rows = await sql<OutboxRow>`SELECT id, exchange, routing_key, cc, body FROM outbox ORDER BY id`.execute(db);
  return rows.rows.filter(
    (r) =>
      (!filter.exchange || r.exchange.endsWith(`/${filter.exchange}`)) &&
      (!filter.taskId || (r.routing_key.split('.').length === 10 && r.routing_key.split('.')[1] === filter.taskId)),
  );
}
