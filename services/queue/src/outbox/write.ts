// The only way a pulse message leaves the queue: a row in `outbox`, inserted in the transaction
// whose change it reports. The relay publishes rows in id order after commit.
import { sql } from 'kysely';
import type { Trx } from '../db/database.js';
import type { OutboxMessage } from './messages.js';

export const outboxChannel = 'conveyor_outbox';

export async function writeOutbox(trx: Trx, exchangePrefix: string, messages: OutboxMessage[]): Promise<void> {
  if (messages.length === 0) return;
  // One statement. The notification is delivered at commit (PostgreSQL folds duplicates within a
  // transaction). pg_current_xact_id() makes sure the transaction has its xid before it takes
  // outbox ids — the event stream's gap handling (tail.ts) relies on it: the ids are `nextval`
  // defaults computed in the projection of each joined row, and a joined row needs the
  // materialized `x` first, so the xid exists before the first id is drawn.
  const rows = messages.map((m) => sql`(${exchangePrefix + m.exchange}, ${m.routingKey}, ${m.cc}::text[], ${JSON.stringify(m.body)}::jsonb)`);
  await sql`
    WITH x AS MATERIALIZED (SELECT pg_current_xact_id() AS xid, pg_notify(${outboxChannel}, '') AS notified)
    INSERT INTO outbox (exchange, routing_key, cc, body)
    SELECT v.exchange, v.routing_key, v.cc, v.body FROM x, (VALUES ${sql.join(rows)}) AS v (exchange, routing_key, cc, body)`.execute(trx);
}
