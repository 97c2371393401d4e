// GET /api/queue/v1/events: the outbox as Server-Sent Events. Filters are AMQP bindings: one or
// more exchanges and routing-key patterns (`*` one word, `#` any), matched against the primary key
// and the CC keys (`route.<r>`). Each event's id is its outbox id (= the AMQP messageId); a client
// that reconnects with Last-Event-ID gets everything after it that the outbox still holds.
import { exchangeByName, exchanges, topicMatcher } from '@conveyor/pulse';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import { apiPrefix } from '../http/server.js';
import { ApiError } from '../http/errors.js';
import { outboxTextColumns, toEvent, type OutboxEvent, type OutboxTextRow } from './rows.js';
import { OutboxTail } from './tail.js';

export const eventsPath = `${apiPrefix}/events`;
/** A client this far behind is cut off; it resumes from the database with Last-Event-ID. */
const maxBufferedBytes = 8 * 1024 * 1024;
const keepaliveMs = 15_000;
const patternRe = /^(\*|#|[^.*#]+)(\.(\*|#|[^.*#]+))*$/;

export interface EventFilter {
  exchanges: Set<string> | undefined;
  match(e: Pick<OutboxEvent, 'routingKey' | 'cc'>): boolean;
}

function list(v: unknown): string[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(',')).map((x) => x.trim()).filter(Boolean);
}

/** Query → filter; a bad exchange or pattern is a 400, as a binding to it would be refused. */
export function parseFilter(query: Record<string, unknown>, exchangePrefix: string): EventFilter {
  const names = list(query.exchange).map((x) => {
    const short = x.startsWith(exchangePrefix) ? x.slice(exchangePrefix.length) : x;
    if (!exchangeByName(short)) {
      throw new ApiError('InvalidRequestArguments', `Unknown exchange ${x}; one of ${Object.values(exchanges).map((e) => e.name).join(', ')}`);
    }
    return exchangePrefix + short;
  });
  const patterns = list(query.routingKeyPattern);
  for (const p of patterns) {
    if (p.length > 255 || !patternRe.test(p)) {
      throw new ApiError('InvalidRequestArguments', `Invalid routingKeyPattern ${JSON.stringify(p)}: dot-separated words, * or #`);
    }
  }
  const matchers = (patterns.length ? patterns : ['#']).map(topicMatcher);
  return {
    exchanges: names.length ? new Set(names) : undefined,
    match: (e) => matchers.some((m) => m(e.routingKey) || e.cc.some((k) => m(k))),
  };
}

function lastEventId(req: FastifyRequest, query: Record<string, unknown>): bigint | undefined {
  const raw = req.headers['last-event-id'] ?? query.lastEventId;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,19}$/.test(String(raw))) throw new ApiError('InvalidRequestArguments', `Last-Event-ID must be an event id (digits), got ${String(raw)}`);
  return BigInt(String(raw));
}

export function formatEvent(e: OutboxEvent): string {
  const routes = e.cc.filter((k) => k.startsWith('route.')).map((k) => k.slice(6));
  const data =
    `{"messageId":"${e.id}","exchange":${JSON.stringify(e.exchange)},"routingKey":${JSON.stringify(e.routingKey)},` +
    `"routes":${JSON.stringify(routes)},"created":"${new Date(e.created).toISOString()}","payload":${e.body}}`;
  return `id: ${e.id}\ndata: ${data}\n\n`;
}

/** Settled rows in (after, upTo], for a client that resumes behind the live tail. */
async function history(ctx: Ctx, filter: EventFilter, after: bigint, upTo: bigint, limit: number): Promise<OutboxEvent[]> {
  const ex = filter.exchanges ? [...filter.exchanges] : null;
  const { rows } = await sql<OutboxTextRow>`
    SELECT ${sql.raw(outboxTextColumns)} FROM outbox
    WHERE id > ${after.toString()} AND id <= ${upTo.toString()}
      AND (${ex}::text[] IS NULL OR exchange = ANY(${ex}::text[]))
    ORDER BY outbox.id LIMIT ${limit}`.execute(ctx.db);
  return rows.map(toEvent);
}

const tails = new WeakMap<Ctx, OutboxTail>();

function tailFor(ctx: Ctx): OutboxTail {
  let tail = tails.get(ctx);
  if (!tail) {
    tail = new OutboxTail(ctx.config.databaseUrl!, ctx.log);
    tails.set(ctx, tail);
    const t = tail;
    ctx.draining.addEventListener('abort', () => void t.stop(), { once: true });
  }
  return tail;
}

async function serve(ctx: Ctx, req: FastifyRequest, reply: FastifyReply): Promise<void> {
  const query = (req.query ?? {}) as Record<string, unknown>;
  const filter = parseFilter(query, ctx.config.exchangePrefix);
  const resumeAfter = lastEventId(req, query);
  if (ctx.draining.aborted) {
    // shutting down: the client retries (another replica, or this one restarted)
    await reply.code(503).header('retry-after', '2').send({ code: 'ServiceUnavailable', message: 'The server is shutting down; retry', requestInfo: {} });
    return;
  }
  const tail = tailFor(ctx);
  await tail.ready();

  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.write('retry: 2000\n\n');

  let closed = false;
  let sentUpTo = resumeAfter ?? 0n;
  const wanted = (e: OutboxEvent) => e.id > sentUpTo && (!filter.exchanges || filter.exchanges.has(e.exchange)) && filter.match(e);
  const send = (events: OutboxEvent[]) => {
    if (closed) return;
    let chunk = '';
    for (const e of events) if (wanted(e)) chunk += formatEvent(e);
    if (events.length) sentUpTo = sentUpTo > events[events.length - 1]!.id ? sentUpTo : events[events.length - 1]!.id;
    if (chunk) res.write(chunk);
    if (res.writableLength > maxBufferedBytes) finish();
  };

  let backlog: OutboxEvent[][] | undefined = [];
  const sub = tail.subscribe((events) => (backlog ? backlog.push(events) : send(events)));
  const keepalive = setInterval(() => res.write(': keepalive\n\n'), keepaliveMs);
  const finish = () => {
    if (closed) return;
    closed = true;
    sub.unsubscribe();
    clearInterval(keepalive);
    ctx.draining.removeEventListener('abort', finish);
    res.end();
  };
  res.on('close', finish);
  ctx.draining.addEventListener('abort', finish, { once: true });

  try {
    // catch up from the database to where the live tail stood when we subscribed
    if (resumeAfter !== undefined && resumeAfter < sub.cursor) {
      let after = resumeAfter;
      while (!closed) {
        const page = await history(ctx, filter, after, sub.cursor, 1000);
        if (page.length === 0) break;
        after = page[page.length - 1]!.id;
        send(page);
        sentUpTo = after;
        if (res.writableNeedDrain && !closed) {
          await new Promise<void>((resolve) => {
            const done = () => {
              res.off('drain', done);
              res.off('close', done);
              resolve();
            };
            res.on('drain', done);
            res.on('close', done);
          });
        }
      }
    }
    if (sentUpTo < sub.cursor) sentUpTo = sub.cursor;
    const pending = backlog;
    backlog = undefined;
    for (const events of pending) send(events);
  } catch (err) {
    ctx.log.error({ err }, 'event stream catch-up failed');
    finish();
  }
}

export function eventsRoutes(ctx: Ctx) {
  return (app: FastifyInstance) => {
    app.get(eventsPath, (req, reply) => serve(ctx, req, reply));
  };
}
