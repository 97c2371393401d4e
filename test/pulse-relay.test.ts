// The relay as a distributed component: one active relay per database (the other stands by and
// takes over), and a broker connection cut through a TCP proxy while the API keeps working — the
// backlog then drains and every committed row reaches the queue.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { sql } from 'kysely';
import { OutboxRelay } from '../services/queue/src/outbox/relay.js';
import { amqpUrl, startTestQueue, type TestQueue } from './harness/service.js';
import { allExchanges, deleteExchanges, listen, type Listener } from './harness/amqp.js';
import { TcpProxy } from './harness/proxy.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { waitFor } from './harness/wait.js';

const until = <T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000) =>
  waitFor(what, check, { timeoutMs });

async function outboxIds(q: TestQueue): Promise<{ all: string[]; unpublished: number }> {
  const { rows } = await sql<{ id: string; published: Date | null }>`SELECT id, published FROM outbox ORDER BY id`.execute(q.service.ctx.db);
  return { all: rows.map((r) => r.id), unpublished: rows.filter((r) => !r.published).length };
}

/** One create → claim → complete through the API. */
async function lifecycle(q: TestQueue, taskQueueId: string): Promise<void> {
  const queue = q.queue();
  const taskId = slugid();
  await queue.createTask(taskId, taskDef({ taskQueueId }));
  const claim = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
  assert.equal(claim.tasks.length, 1);
  await q.queue({ credentials: claim.tasks[0].credentials }).reportCompleted(claim.tasks[0].status.taskId, claim.tasks[0].runId);
}

describe('outbox relay', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('runs one active relay per database; the standby takes over when it stops', async () => {
    // the service itself runs no relay here: the two relays are started by hand
    const q = await startTestQueue({ relayPollIntervalMs: 50 });
    const prefix = q.config.exchangePrefix;
    const l = await listen(allExchanges(prefix));
    cleanups.push(async () => {
      await l.close();
      await q.stop();
      await deleteExchanges(prefix);
    });
    const log = pino({ level: 'silent' });
    const config = { ...q.config, amqpUrl };
    const first = new OutboxRelay({ config, log }).start();
    await until('first relay active', () => first.status.role === 'active' && first.status.brokerConnected);
    const second = new OutboxRelay({ config, log }).start();
    cleanups.push(() => second.stop());
    await until('second relay standing by', () => second.status.role === 'standby');

    const taskQueueId = uniqueQueue();
    await lifecycle(q, taskQueueId);
    await until('first batch published', async () => (await outboxIds(q)).unpublished === 0);
    assert.ok(first.status.published > 0);
    assert.equal(second.status.published, 0);

    await first.stop();
    await lifecycle(q, taskQueueId);
    await until('standby took over', () => second.status.role === 'active');
    await until('second batch published', async () => (await outboxIds(q)).unpublished === 0);
    assert.ok(second.status.published > 0);
    const { all } = await outboxIds(q);
    await l.waitFor(() => true, all.length);
    assert.deepEqual(new Set(l.messages.map((m) => m.properties.messageId)), new Set(all));
  });

  describe('with the broker connection cut', () => {
    let q: TestQueue;
    let proxy: TcpProxy;
    let l: Listener;
    before(async () => {
      proxy = new TcpProxy(new URL(amqpUrl).hostname, Number(new URL(amqpUrl).port || 5672));
      await proxy.listen();
      q = await startTestQueue({ amqpUrl: proxy.url(amqpUrl), amqpReconnectMaxMs: 300, relayPollIntervalMs: 100 });
      // the listener talks to RabbitMQ directly: only the relay's path is cut
      l = await listen(allExchanges(q.config.exchangePrefix));
      cleanups.push(async () => {
        await l.close();
        await q.stop();
        await proxy.close();
        await deleteExchanges(q.config.exchangePrefix);
      });
    });

    const heartbeat = async () => (await (await fetch(`${q.rootUrl}/api/queue/v1/__heartbeat__`)).json()) as any;

    it('keeps serving the API, reports the outage, and drains the backlog after', async () => {
      const taskQueueId = uniqueQueue();
      await lifecycle(q, taskQueueId);
      await until('published before the cut', async () => (await outboxIds(q)).unpublished === 0);
      const hb0 = await heartbeat();
      assert.equal(hb0.broker.ok, true);
      assert.equal(hb0.broker.role, 'active');
      assert.equal(hb0.outbox.ok, true);

      proxy.cut();
      const cutAt = Date.now();
      let calls = 0;
      // the API works throughout a 3 s outage
      while (Date.now() - cutAt < 3000) {
        await lifecycle(q, taskQueueId);
        calls++;
      }
      const during = await outboxIds(q);
      assert.ok(during.unpublished >= calls * 4, `unpublished ${during.unpublished} after ${calls} lifecycles`);
      const hb1 = await until('heartbeat reports the broker down', async () => {
        const hb = await heartbeat();
        return hb.broker.ok === false && hb;
      });
      assert.equal(hb1.broker.connected, false);
      assert.ok(hb1.outbox.unpublished >= calls * 4);

      proxy.restore();
      await until('backlog drained', async () => (await outboxIds(q)).unpublished === 0);
      const { all } = await outboxIds(q);
      await l.waitFor(() => true, all.length, 15_000);
      const received = new Set(l.messages.map((m) => m.properties.messageId));
      assert.deepEqual([...new Set(all)].filter((id) => !received.has(id)), []);
      const hb2 = await heartbeat();
      assert.equal(hb2.broker.ok, true);
      assert.equal(hb2.outbox.unpublished, 0);
      const metrics = await (await fetch(`${q.rootUrl}/metrics`)).text();
      assert.match(metrics, /^conveyor_relay_active 1$/m);
      assert.ok(Number(/^conveyor_outbox_published_total (\d+)$/m.exec(metrics)?.[1]) >= all.length);
    });
  });
});
