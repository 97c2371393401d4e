// The only way a pulse message leaves the queue: a row in `outbox`, inserted in the transaction
// whose change it reports. The relay publishes rows in id order after commit.
import { sql, type CompiledQuery, type RawBuilder } from 'kysely';
import type { Trx } from '../db/database.js';
import { template } from '../db/template.js';
import type { OutboxMessage } from './messages.js';

export const outboxChannel = 'conveyor_outbox';

const xidAndNotify = sql`SELECT pg_current_xact_id() AS xid, pg_notify(${outboxChannel}, '') AS notified`;

/**
 * A WITH entry `outbox_xid` for a statement that builds its messages in SQL from the rows of its
 * CTE `cte`, one message set per row: it takes the transaction's xid (the rule insertMessages
 * explains; join it to the message rows) and notifies the relay — only when `cte` has rows, so a
 * statement that wrote nothing takes no xid and wakes nobody.
 */
export function outboxXidWith(cte: string): RawBuilder<unknown> {
  return sql`outbox_xid AS MATERIALIZED (${xidAndNotify} FROM (SELECT FROM ${sql.table(cte)} LIMIT 1) any_row)`;
}

export async function writeOutbox(trx: Trx, exchangePrefix: string, messages: OutboxMessage[]): Promise<void> {
  if (messages.length === 0) return;
  await trx.executeQuery(outboxStatement(exchangePrefix, messages));
}

/** writeOutbox's statement, to run later (a batch transaction sends it with COMMIT: db/batch-transaction.ts). */
export function outboxStatement(exchangePrefix: string, messages: OutboxMessage[]): CompiledQuery {
  const rows = JSON.stringify(messages.map((m) => ({ exchange: m.exchange, routing_key: m.routingKey, cc: m.cc, body: m.body })));
  return insertMessages({ prefix: exchangePrefix, rows });
}

// One statement. The notification is delivered at commit (PostgreSQL folds duplicates within a
// transaction). pg_current_xact_id() makes sure the transaction has its xid before it takes
// outbox ids — the event stream's gap handling (tail.ts) relies on it: the ids are `nextval`
// defaults computed in the projection of each joined row, and a joined row needs the
// materialized `x` first, so the xid exists before the first id is drawn.
// The messages travel as one JSON array: the text is the same for any number of them, so it is
// prepared once per connection (a VALUES list with 4 parameters a message was parsed anew for
// each count). Measured for 20 messages: Node CPU 1.2 → 0.6 ms, round trip 5.8 → 4.1 ms.
const insertMessages = template<{ prefix: string; rows: string }>(({ prefix, rows }) => sql`
  WITH x AS MATERIALIZED (${xidAndNotify})
  INSERT INTO outbox (exchange, routing_key, cc, body)
  SELECT ${prefix}::text || v.exchange, v.routing_key, ARRAY(SELECT json_array_elements_text(v.cc)), v.body
  FROM x, ROWS FROM (json_to_recordset(${rows}::json) AS (exchange text, routing_key text, cc json, body json))
    WITH ORDINALITY AS v
  -- outbox ids are drawn in this order (the relay publishes in id order)
  ORDER BY v.ordinality`);
