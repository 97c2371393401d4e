// The consumer library on real RabbitMQ: typed bindings equal to taskcluster-client's patterns, ack
// after the handler, bounded redelivery then dead-letter or drop, and a reconnect that declares the
// queue and its bindings again.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import taskcluster from 'taskcluster-client';
import { consume, defaultExchangePrefix, Publisher, QueueEvents, topicMatches, type Consumer, type PulseMessage } from '@conveyor/pulse';
import { amqpUrl } from './harness/service.js';
import { deleteExchanges } from './harness/amqp.js';
import { TcpProxy } from './harness/proxy.js';
import { waitFor } from './harness/wait.js';

const until = <T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000) =>
  waitFor(what, check, { timeoutMs });

async function queueDepth(name: string): Promise<number> {
  const conn = await amqp.connect(amqpUrl);
  try {
    const ch = await conn.createChannel();
    return (await ch.checkQueue(name)).messageCount;
  } finally {
    await conn.close();
  }
}

describe('consumer library', () => {
  const prefix = `exchange/conveyor-test-${randomBytes(4).toString('hex')}/v1/`;
  const events = new QueueEvents({ exchangePrefix: prefix });
  const queues: string[] = [];
  const consumers: Consumer[] = [];
  const publisher = new Publisher({ url: amqpUrl, exchangePrefix: prefix });
  let seq = 0;
  const publish = (taskId: string, extra: Record<string, unknown> = {}, cc: string[] = []) =>
    publisher.publish([
      {
        exchange: prefix + 'task-completed',
        routingKey: `primary.${taskId}.0.wg.w.prov.wt.-.${taskId}._`,
        content: JSON.stringify({ version: 1, status: { taskId }, runId: 0, workerGroup: 'wg', workerId: 'w', ...extra }),
        messageId: String(++seq),
        cc,
      },
    ]);
  const named = (n: string) => {
    const q = `queue/conveyor-test/${n}-${randomBytes(3).toString('hex')}`;
    queues.push(q);
    return q;
  };

  before(async () => {
    await publisher.connect();
  });
  after(async () => {
    for (const c of consumers) await c.stop();
    await publisher.close();
    await deleteExchanges(prefix, queues);
  });

  it('builds the same binding patterns as taskcluster-client', () => {
    const client = new taskcluster.QueueEvents({ rootUrl: 'http://unused' });
    const cases: Array<[string, Record<string, unknown> | string | undefined]> = [
      ['taskCompleted', { taskGroupId: 'g1' }],
      ['taskPending', { taskId: 'abc', runId: 0 }],
      ['taskDefined', undefined],
      ['taskException', 'route.index.#'],
      ['taskGroupResolved', { schedulerId: 's' }],
      ['artifactCreated', { workerType: 'wt', provisionerId: 'p' }],
    ];
    for (const [method, filter] of cases) {
      const ours = (events as any)[method](filter);
      const theirs = client[method](filter);
      assert.equal(ours.routingKeyPattern, theirs.routingKeyPattern, method);
      assert.equal(ours.exchange, prefix + theirs.exchange.slice(defaultExchangePrefix.length));
    }
    assert.throws(() => events.taskCompleted({ taskId: 'a.b' }), /dots/);
    assert.equal(topicMatches('primary.*.#', 'primary.x'), true);
    assert.equal(topicMatches('route.index.#.z', 'route.index.a.b.z'), true);
    assert.equal(topicMatches('primary.*', 'primary.a.b'), false);
  });

  it('delivers typed messages on a durable queue and acks only after the handler resolves', async () => {
    const proxy = new TcpProxy('127.0.0.1', Number(new URL(amqpUrl).port || 5672));
    await proxy.listen();
    const queueName = named('typed');
    const got: PulseMessage<'task-completed'>[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const c = await consume({
      url: proxy.url(amqpUrl),
      queueName,
      backoff: { initialMs: 50, maxMs: 200 },
      bindings: [events.taskCompleted({ taskGroupId: 'grp1' })],
      handler: async (m) => {
        got.push(m);
        // typed: name narrows payload to TaskCompletedMessage
        if (m.name === 'task-completed') assert.equal(typeof m.payload.workerId, 'string');
        if (got.length === 1) await gate;
      },
    });
    consumers.push(c);
    try {
      await publish('grp1', {}, ['route.index.x']);
      await until('delivery', () => got.length === 1);
      // the connection dies while the handler runs: the message was not acked, so it comes again
      proxy.cut();
      release();
      proxy.restore();
      await until('redelivery', () => got.length === 2);
      assert.equal(got[1]!.redelivered, true);
      assert.equal(got[1]!.messageId, got[0]!.messageId);
      await until('acked', async () => (await queueDepth(queueName)) === 0);
      const m = got[0]!;
      assert.equal(m.name, 'task-completed');
      assert.equal(m.exchange, prefix + 'task-completed');
      assert.equal(m.routingKey, 'primary.grp1.0.wg.w.prov.wt.-.grp1._');
      assert.deepEqual(m.routes, ['index.x']);
      assert.equal(m.attempt, 1);
      assert.equal(m.messageId, String(seq));
    } finally {
      await proxy.close();
    }
  });

  it('redelivers a failing message a bounded number of times, then dead-letters it', async () => {
    const queueName = named('retry');
    const deadLetterQueue = named('dead');
    const attempts: number[] = [];
    const c = await consume({
      url: amqpUrl,
      queueName,
      deadLetterQueue,
      maxAttempts: 3,
      retryDelayMs: 10,
      bindings: [events.taskCompleted({ taskId: 'failing' }), events.taskCompleted({ taskId: 'flaky' })],
      handler: async (m) => {
        if (m.payload.status.taskId === 'failing') {
          attempts.push(m.attempt);
          throw new Error('handler broke');
        }
        if (m.attempt < 2) throw new Error('first try fails');
        attempts.push(100 + m.attempt);
      },
    });
    consumers.push(c);
    await publish('flaky');
    await publish('failing');
    await until('dead-lettered', async () => (await queueDepth(deadLetterQueue)) === 1);
    assert.deepEqual(attempts.filter((a) => a < 100), [1, 2, 3]);
    assert.deepEqual(attempts.filter((a) => a >= 100), [102]);
    const conn = await amqp.connect(amqpUrl);
    const ch = await conn.createChannel();
    const dead = await ch.get(deadLetterQueue, { noAck: true });
    await conn.close();
    assert.ok(dead);
    assert.equal(dead.properties.headers?.['x-conveyor-error'], 'handler broke');
    assert.equal(dead.properties.headers?.['x-conveyor-exchange'], prefix + 'task-completed');
    assert.equal(JSON.parse(dead.content.toString()).status.taskId, 'failing');
    assert.equal(await queueDepth(queueName), 0);
  });

  it('drops a message that keeps failing when there is no dead-letter queue, and logs it', async () => {
    const queueName = named('drop');
    const errors: string[] = [];
    let calls = 0;
    const c = await consume({
      url: amqpUrl,
      queueName,
      maxAttempts: 2,
      retryDelayMs: 10,
      bindings: [events.taskCompleted({ taskId: 'dropme' })],
      handler: () => {
        calls++;
        throw new Error('nope');
      },
      log: { info() {}, warn() {}, error: (_o, msg) => void errors.push(String(msg)) },
    });
    consumers.push(c);
    await publish('dropme');
    await until('dropped', () => errors.some((e) => /dropped/.test(e)));
    assert.equal(calls, 2);
    assert.equal(await queueDepth(queueName), 0);
  });

  it('reconnects after the connection drops and binds again', async () => {
    const proxy = new TcpProxy('127.0.0.1', Number(new URL(amqpUrl).port || 5672));
    await proxy.listen();
    const queueName = named('reconnect');
    const got: string[] = [];
    const c = await consume({
      url: proxy.url(amqpUrl),
      queueName,
      backoff: { initialMs: 50, maxMs: 200 },
      bindings: [events.taskCompleted({ taskId: 'again' })],
      handler: (m) => void got.push(m.messageId),
    });
    consumers.push(c);
    try {
      await publish('again');
      await until('first message', () => got.length === 1);
      proxy.cut();
      await until('disconnected', () => !c.connected);
      // published while the consumer is away: the durable queue keeps it
      await publish('again');
      proxy.restore();
      await until('reconnected', () => c.connected);
      await publish('again');
      // at-least-once: an ack in flight at the cut is lost, so the first message may come twice
      await until('messages after reconnect', () => new Set(got).size === 3);
      assert.deepEqual([...new Set(got)], [String(seq - 2), String(seq - 1), String(seq)]);

      // an exclusive queue is gone with the connection: the reconnect declares and binds a new one
      const exclusiveGot: string[] = [];
      const ex = await consume({
        url: proxy.url(amqpUrl),
        backoff: { initialMs: 50, maxMs: 200 },
        bindings: [events.taskCompleted({ taskId: 'excl' })],
        handler: (m) => void exclusiveGot.push(m.messageId),
      });
      consumers.push(ex);
      const firstQueue = ex.queue;
      proxy.cut();
      await until('exclusive disconnected', () => !ex.connected);
      proxy.restore();
      await until('exclusive reconnected', () => ex.connected);
      assert.notEqual(ex.queue, firstQueue);
      await publish('excl');
      await until('exclusive message after reconnect', () => exclusiveGot.length >= 1);
    } finally {
      await proxy.close();
    }
  });
});
