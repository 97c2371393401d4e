// What __heartbeat__ says about events: the outbox backlog (every process that serves HTTP) and,
// where a relay runs, its role and broker connection.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { OutboxRelay } from './relay.js';

/** Unpublished rows counted at most up to this, so the check stays cheap with a big backlog. */
const countCap = 100_000;
/** A backlog whose oldest row waits longer than this makes the heartbeat unhealthy. */
const maxBacklogAgeSec = 300;

export async function outboxHealth(ctx: Ctx): Promise<Record<string, unknown>> {
  if (!ctx.config.amqpUrl) return { ok: true, amqp: 'off (events are served by GET /api/queue/v1/events only)' };
  const { rows } = await sql<{ n: number; age: number | null }>`
    SELECT count(*)::int AS n, extract(epoch FROM now() - min(created))::float8 AS age
    FROM (SELECT created FROM outbox WHERE published IS NULL ORDER BY id LIMIT ${countCap}) head`.execute(ctx.db);
  const { n, age } = rows[0]!;
  return {
    ok: age === null || age < maxBacklogAgeSec,
    unpublished: n,
    ...(n >= countCap ? { capped: true } : {}),
    oldestUnpublishedSec: age === null ? 0 : Math.round(age * 10) / 10,
  };
}

export function brokerHealth(relay: OutboxRelay): Record<string, unknown> {
  const s = relay.status;
  return {
    // a standby relay has no broker connection by design
    ok: s.role === 'standby' || s.brokerConnected,
    role: s.role,
    connected: s.brokerConnected,
    published: s.published,
    ...(s.lastPublishedAt ? { lastPublishedAt: s.lastPublishedAt } : {}),
    ...(s.lastError && !s.brokerConnected ? { lastError: s.lastError } : {}),
  };
}
