// The HTTP event stream (GET /api/queue/v1/events) with AMQP off: binding-style filters, resuming
// with Last-Event-ID, and the settled-order guarantee when outbox ids commit out of order.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { followEventStream, type StreamEvent } from '@conveyor/pulse';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { waitFor } from './harness/wait.js';

const until = <T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000) =>
  waitFor(what, check, { timeoutMs });

function collect(rootUrl: string, opts: { exchanges?: string[]; routingKeyPatterns?: string[]; lastEventId?: string } = {}) {
  const events: StreamEvent[] = [];
  const errors: Error[] = [];
  let opened = 0;
  const stream = followEventStream({ rootUrl, ...opts, onOpen: () => opened++, onEvent: (e) => void events.push(e), onError: (e) => errors.push(e) });
  return { events, errors, stream, opened: () => opened };
}

describe('HTTP event stream', () => {
  let q: TestQueue;
  const stops: Array<() => Promise<void>> = [];
  before(async () => {
    q = await startTestQueue();
    assert.equal(q.config.amqpUrl, undefined);
  });
  after(async () => {
    for (const s of stops) await s();
    await q?.stop();
  });

  const open = async (opts: Parameters<typeof collect>[1] = {}) => {
    const c = collect(q.rootUrl, opts);
    stops.push(() => c.stream.stop());
    // the server subscribes before it answers: from here on, every new event reaches the stream
    await until('stream connection', () => c.opened() > 0);
    return c;
  };

  it('filters by exchange and routing-key pattern, matching CC routes too', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const [a, b] = [slugid(), slugid()];
    const byTask = await open({ exchanges: ['task-pending', `${q.config.exchangePrefix}task-defined`], routingKeyPatterns: [`primary.${a}.#`] });
    const byRoute = await open({ routingKeyPatterns: ['route.stream.*.x'] });
    await queue.createTask(a, taskDef({ taskQueueId }));
    await queue.createTask(b, taskDef({ taskQueueId, routes: ['stream.b.x', 'other'] }));

    await until('task a events', () => byTask.events.length >= 2);
    await until('route events', () => byRoute.events.length >= 2);
    assert.deepEqual(byTask.events.map((e) => e.exchange.split('/').pop()), ['task-defined', 'task-pending']);
    assert.ok(byTask.events.every((e) => e.routingKey.startsWith(`primary.${a}.`)));
    assert.deepEqual(byTask.events.map((e) => (e.payload as any).status.state), ['unscheduled', 'pending']);
    assert.deepEqual(byRoute.events.map((e) => (e.payload as any).status.taskId), [b, b]);
    assert.deepEqual(byRoute.events[0]!.routes, ['stream.b.x', 'other']);
    assert.ok(BigInt(byTask.events[0]!.messageId) < BigInt(byTask.events[1]!.messageId));
  });

  it('resumes after Last-Event-ID with nothing missed and nothing repeated', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const pattern = [`primary.*.*.*.*.*.${taskQueueId.split('/')[1]}.#`];
    const first = await open({ exchanges: ['task-defined', 'task-pending'], routingKeyPatterns: pattern });
    const ids = [slugid(), slugid(), slugid(), slugid()];
    await queue.createTask(ids[0], taskDef({ taskQueueId }));
    await queue.createTask(ids[1], taskDef({ taskQueueId }));
    await until('first events', () => first.events.length >= 4);
    await first.stream.stop();
    const last = first.events[3]!.messageId;

    await queue.createTask(ids[2], taskDef({ taskQueueId }));
    await queue.createTask(ids[3], taskDef({ taskQueueId }));
    const resumed = await open({ exchanges: ['task-defined', 'task-pending'], routingKeyPatterns: pattern, lastEventId: last });
    await until('resumed events', () => resumed.events.length >= 4);
    const tasksSeen = [...first.events, ...resumed.events].map((e) => (e.payload as any).status.taskId);
    assert.deepEqual(tasksSeen, ids.flatMap((id) => [id, id]));
    const all = [...first.events, ...resumed.events].map((e) => e.messageId);
    assert.equal(new Set(all).size, all.length);
  });

  it('holds back ids behind an open transaction until it commits, and skips rolled-back ids', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const all = await open({ routingKeyPatterns: ['#'] });
    const before = all.events.length;
    const insert = (c: pg.Client, tag: string) =>
      c.query(
        `INSERT INTO outbox (exchange, routing_key, cc, body) VALUES ($1, $2, '{}', $3) RETURNING id::text`,
        [`${q.config.exchangePrefix}task-defined`, `primary.${tag}._._._.p.w.-.${tag}._`, JSON.stringify({ marker: tag })],
      );
    const held = new pg.Client({ connectionString: q.database.url });
    await held.connect();
    try {
      // a writer that took its id first but commits last
      await held.query('BEGIN');
      await held.query('SELECT pg_current_xact_id()');
      const heldId = (await insert(held, 'held')).rows[0].id;
      const later = slugid();
      await queue.createTask(later, taskDef({ taskQueueId }));
      // absence can only be shown over time: the tail was notified of the task's commit at once
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(all.events.length, before, 'events after an uncommitted id must wait for it');
      await held.query('COMMIT');
      await until('held and later events', () => all.events.length >= before + 3);
      const got = all.events.slice(before);
      assert.equal(got[0]!.messageId, heldId);
      assert.deepEqual(got[0]!.payload, { marker: 'held' });
      assert.deepEqual(got.slice(1).map((e) => (e.payload as any).status.taskId), [later, later]);

      // rolled back: the stream goes past the hole
      await held.query('BEGIN');
      await held.query('SELECT pg_current_xact_id()');
      await insert(held, 'rolledback');
      const next = slugid();
      await queue.createTask(next, taskDef({ taskQueueId }));
      await held.query('ROLLBACK');
      await until('events after the rolled-back id', () => all.events.length >= before + 5);
      assert.deepEqual(all.events.slice(before + 3).map((e) => (e.payload as any).status.taskId), [next, next]);
    } finally {
      await held.end();
    }
  });

  it('ends open streams when the service drains, so shutdown does not wait on them', async () => {
    const other = await startTestQueue();
    const c = collect(other.rootUrl);
    try {
      await until('stream connection', () => c.opened() > 0);
      const started = Date.now();
      await other.stop();
      assert.ok(Date.now() - started < 5000, `stop took ${Date.now() - started} ms with a stream open`);
      await until('client saw the end', () => c.errors.length > 0);
    } finally {
      await c.stream.stop();
    }
  });

  it('refuses an unknown exchange or a malformed pattern with 400', async () => {
    for (const query of ['exchange=no-such-exchange', 'routingKeyPattern=a..b', 'routingKeyPattern=a.b%23']) {
      const res = await fetch(`${q.rootUrl}/api/queue/v1/events?${query}`);
      assert.equal(res.status, 400, query);
      const body = (await res.json()) as { code: string };
      assert.equal(body.code, 'InvalidRequestArguments');
    }
    const res = await fetch(`${q.rootUrl}/api/queue/v1/events`, { headers: { 'last-event-id': 'abc' } });
    assert.equal(res.status, 400);
  });
});
