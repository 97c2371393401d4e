// Plain amqplib listeners for tests: a queue bound with routing-key patterns that records every
// delivery, and waits (with a deadline) for messages to arrive. Also removes a test's exchanges.
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { defaultExchangePrefix, exchanges } from '@conveyor/pulse';
import { amqpUrl } from './service.js';

export interface Received {
  exchange: string;
  routingKey: string;
  body: any;
  properties: ConsumeMessage['properties'];
  redelivered: boolean;
}

export interface BindingLike {
  exchange: string;
  routingKeyPattern: string;
}

/**
 * A taskcluster-client QueueEvents binding moved onto a test's exchange prefix: client 87 refuses
 * an exchangePrefix option, so its patterns are used as they are, on the test's own exchanges.
 */
export function onPrefix(prefix: string, b: BindingLike): BindingLike {
  return { exchange: prefix + b.exchange.slice(defaultExchangePrefix.length), routingKeyPattern: b.routingKeyPattern };
}

export class Listener {
  readonly messages: Received[] = [];
  private waiters: Array<() => void> = [];

  constructor(
    readonly queue: string,
    private readonly conn: ChannelModel,
    private readonly channel: Channel,
  ) {}

  /** Called for each delivery. */
  record(msg: ConsumeMessage): void {
    this.messages.push({
      exchange: msg.fields.exchange,
      routingKey: msg.fields.routingKey,
      body: JSON.parse(msg.content.toString('utf8')),
      properties: msg.properties,
      redelivered: msg.fields.redelivered,
    });
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves with the messages matching `pred` once there are at least `count`; rejects at the deadline. */
  async waitFor(pred: (m: Received) => boolean, count = 1, timeoutMs = 10_000): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.filter(pred);
      if (found.length >= count) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`waited ${timeoutMs} ms for ${count} message(s); have ${found.length} of ${this.messages.length}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    await this.channel.close().catch(() => {});
    await this.conn.close().catch(() => {});
  }
}

/**
 * A queue bound with the given bindings (exclusive unless `durableName` is given), consuming with
 * acks. Declares the exchanges first, exactly as the publisher does, so binding never races it.
 */
export async function listen(bindings: BindingLike[], opts: { durableName?: string; url?: string } = {}): Promise<Listener> {
  const conn = await amqp.connect(opts.url ?? amqpUrl);
  const ch = await conn.createChannel();
  const q = opts.durableName
    ? await ch.assertQueue(opts.durableName, { durable: true, autoDelete: false })
    : await ch.assertQueue('', { exclusive: true, autoDelete: true });
  for (const b of bindings) {
    await ch.assertExchange(b.exchange, 'topic', { durable: true, autoDelete: false });
    await ch.bindQueue(q.queue, b.exchange, b.routingKeyPattern);
  }
  const listener = new Listener(q.queue, conn, ch);
  await ch.consume(q.queue, (msg) => {
    if (!msg) return;
    listener.record(msg);
    ch.ack(msg);
  });
  return listener;
}

/** Deletes the catalogue's exchanges under a test prefix (and optionally some queues). */
export async function deleteExchanges(prefix: string, queues: string[] = []): Promise<void> {
  const conn = await amqp.connect(amqpUrl);
  const ch = await conn.createChannel();
  for (const q of queues) await ch.deleteQueue(q).catch(() => {});
  for (const e of Object.values(exchanges)) await ch.deleteExchange(prefix + e.name).catch(() => {});
  await conn.close();
}

/** Every catalogue exchange under `prefix`, bound with `pattern`. */
export function allExchanges(prefix: string, pattern = '#'): BindingLike[] {
  return Object.values(exchanges).map((e) => ({ exchange: prefix + e.name, routingKeyPattern: pattern }));
}
