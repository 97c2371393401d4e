// The only way a pulse message leaves the queue: a row in `outbox`, inserted in the transaction
// whose change it reports. The relay publishes rows in id order after commit.
import { sql } from 'kysely';
import type { Trx } from '../db/database.js';
import type { OutboxMessage } from './messages.js';

export const outboxChannel = 'conveyor_outbox';

export async function writeOutbox(trx: Trx, exchangePrefix: string, messages: OutboxMessage[]): Promise<void> {
  if (messages.length === 0) return;
  // The notification is delivered at commit (PostgreSQL folds duplicates within a transaction).
  // pg_current_xact_id() makes sure the transaction has its xid before it takes outbox ids: the
  // event stream's gap handling (tail.ts) relies on it, and it costs no extra round trip.
  await sql`SELECT pg_notify(${outboxChannel}, ''), pg_current_xact_id()`.execute(trx);
  await trx
    .insertInto('outbox')
    .values(
      messages.map((m) => ({
        exchange: exchangePrefix + m.exchange,
        routing_key: m.routingKey,
        cc: m.cc,
        body: JSON.stringify(m.body),
      })),
    )
    .execute();
}
