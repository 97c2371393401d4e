// Outbox rows as the relay and the event stream read them: the body stays JSON text, sent on
// without a parse/serialize round trip.

export interface OutboxTextRow {
  id: string;
  exchange: string;
  routing_key: string;
  cc: string[];
  body: string;
  created: Date;
}

/** The select list for OutboxTextRow (qualify ORDER BY as outbox.id: `id` here is text). */
export const outboxTextColumns = 'id::text AS id, exchange, routing_key, cc, body::text AS body, created';

export interface OutboxEvent {
  id: bigint;
  exchange: string;
  routingKey: string;
  cc: string[];
  /** The body as JSON text. */
  body: string;
  created: Date;
}

export function toEvent(r: OutboxTextRow): OutboxEvent {
  return { id: BigInt(r.id), exchange: r.exchange, routingKey: r.routing_key, cc: r.cc, body: r.body, created: r.created };
}
