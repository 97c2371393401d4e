// The only way a pulse message leaves the queue: a row in `outbox`, inserted in the transaction
// whose change it reports. The relay publishes rows in id order after commit.
import { sql } from 'kysely';
import type { Trx } from '../db/database.js';
import type { OutboxMessage } from './messages.js';

export const outboxChannel = 'conveyor_outbox';

export async function writeOutbox(trx: Trx, exchangePrefix: string, messages: OutboxMessage[]): Promise<void> {
  if (messages.length === 0) return;
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
  // Delivered at commit; PostgreSQL folds duplicate notifications within one transaction.
  await sql`SELECT pg_notify(${outboxChannel}, '')`.execute(trx);
}
