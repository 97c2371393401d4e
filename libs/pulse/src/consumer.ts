// The consumer: a queue (durable and named, or exclusive), bound with typed bindings, consumed with
// a prefetch window. A message is acked only after its handler resolves. A handler that throws
// gets the message again, up to `maxAttempts` times in all (the retry is a confirmed copy at the
// queue's tail, so a crash in between duplicates rather than loses); then it goes to the dead-letter
// queue, or is dropped with an error log. When the connection drops, the consumer reconnects with
// backoff and declares its queue and bindings again.
import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { backoffDelay, silentLog, sleep, type BackoffOptions, type PulseLog } from './backoff.js';
import type { Binding, ExchangeName, MessageTypes } from './bindings.js';
import { withHeartbeat } from './publisher.js';

/** A delivered message, typed by the exchange it came from. */
export type PulseMessage<E extends ExchangeName = ExchangeName> = {
  [K in E]: {
    /** Exchange name without prefix: narrows `payload`. */
    name: K;
    /** Full exchange name. */
    exchange: string;
    /** The primary routing key (also when the message matched through a CC route). */
    routingKey: string;
    /** The task's routes, from the CC header (`route.<r>` → `<r>`). */
    routes: string[];
    payload: MessageTypes[K];
    /** The outbox id: the same for every copy of one event. */
    messageId: string;
    /** 1 for the first delivery, n for the n-th attempt after handler failures. */
    attempt: number;
    /** The broker delivered this before (e.g. a consumer died before acking it). */
    redelivered: boolean;
  };
}[E];

export type MessageOf<B extends Binding> = B extends Binding<infer E> ? PulseMessage<E> : never;

export interface ConsumerOptions<B extends Binding> {
  url: string;
  bindings: B[];
  handler: (message: MessageOf<B>) => Promise<void> | void;
  /**
   * A durable queue that keeps messages while no consumer runs, e.g. `queue/<clientId>/<name>`.
   * Without it the queue is exclusive: deleted with the connection, messages in between are missed.
   */
  queueName?: string;
  /** Messages handled concurrently (default 10). */
  prefetch?: number;
  /** Deliveries of one message before giving up on it (default 5). */
  maxAttempts?: number;
  /** Delay before a failed message is retried (default 1 s, doubled per attempt). */
  retryDelayMs?: number;
  /** Durable queue for messages that failed maxAttempts times; without it they are dropped. */
  deadLetterQueue?: string;
  backoff?: BackoffOptions;
  heartbeatSec?: number;
  log?: PulseLog;
}

export interface Consumer {
  /** The queue's name (server-generated for an exclusive queue; changes on reconnect). */
  readonly queue: string;
  readonly connected: boolean;
  /** Stops consuming, waits for running handlers (their messages are acked), closes. */
  stop(): Promise<void>;
}

const attemptHeader = 'x-conveyor-attempt';
const exchangeHeader = 'x-conveyor-exchange';
const routingKeyHeader = 'x-conveyor-routing-key';

function exchangeNameOf(exchange: string, bindings: Binding[]): ExchangeName {
  const b = bindings.find((x) => x.exchange === exchange);
  if (b) return b.name;
  return exchange.slice(exchange.lastIndexOf('/') + 1) as ExchangeName;
}

/** Starts consuming; resolves once the queue is bound and the first consume is running. */
export async function consume<B extends Binding>(opts: ConsumerOptions<B>): Promise<Consumer> {
  const c = new PulseConsumer(opts as unknown as ConsumerOptions<Binding>);
  await c.start();
  return c;
}

class PulseConsumer implements Consumer {
  queue = '';
  private conn: ChannelModel | undefined;
  private channel: ConfirmChannel | undefined;
  private stopping = new AbortController();
  private running = new Set<Promise<void>>();
  private reconnecting: Promise<void> | undefined;
  private consumerTag: string | undefined;
  private readonly log: PulseLog;

  constructor(private readonly opts: ConsumerOptions<Binding>) {
    this.log = opts.log ?? silentLog;
    if (opts.bindings.length === 0) throw new Error('a consumer needs at least one binding');
  }

  get connected(): boolean {
    return this.channel !== undefined;
  }

  async start(): Promise<void> {
    await this.setup();
  }

  private async setup(): Promise<void> {
    const o = this.opts;
    const conn = await amqp.connect(withHeartbeat(o.url, o.heartbeatSec ?? 15), {
      // a handshake that never completes (broker half-up, blackholed) must fail, not hang
      timeout: 10_000,
      clientProperties: { connection_name: `conveyor-consumer ${o.queueName ?? '(exclusive)'}` },
    });
    try {
      const ch = await conn.createConfirmChannel();
      const q = o.queueName
        ? await ch.assertQueue(o.queueName, { durable: true, exclusive: false, autoDelete: false })
        : await ch.assertQueue('', { durable: false, exclusive: true, autoDelete: true });
      if (o.deadLetterQueue) await ch.assertQueue(o.deadLetterQueue, { durable: true, autoDelete: false });
      for (const b of o.bindings) {
        await ch.assertExchange(b.exchange, 'topic', { durable: true, autoDelete: false });
        await ch.bindQueue(q.queue, b.exchange, b.routingKeyPattern);
      }
      await ch.prefetch(o.prefetch ?? 10);
      this.queue = q.queue;
      this.conn = conn;
      this.channel = ch;
      const lost = (err?: Error) => {
        if (this.conn !== conn) return;
        this.conn = undefined;
        this.channel = undefined;
        if (this.stopping.signal.aborted) return;
        this.log.warn({ err: err?.message, queue: this.queue }, 'consumer lost its RabbitMQ connection; reconnecting');
        this.reconnecting ??= this.reconnect().finally(() => (this.reconnecting = undefined));
      };
      conn.on('error', lost);
      conn.on('close', lost);
      ch.on('close', () => {
        if (this.channel === ch) void conn.close().catch(() => {});
      });
      ch.on('error', () => {});
      const { consumerTag } = await ch.consume(q.queue, (msg) => {
        if (!msg) return lost(new Error('consumer cancelled by the broker'));
        const p = this.handle(ch, msg).catch((err: Error) => this.log.error({ err: err.message }, 'consumer bookkeeping failed'));
        this.running.add(p);
        void p.finally(() => this.running.delete(p));
      });
      this.consumerTag = consumerTag;
    } catch (err) {
      await conn.close().catch(() => {});
      throw err;
    }
  }

  private async reconnect(): Promise<void> {
    for (let attempt = 1; !this.stopping.signal.aborted; attempt++) {
      await sleep(backoffDelay(attempt, this.opts.backoff), this.stopping.signal);
      if (this.stopping.signal.aborted) return;
      try {
        await this.setup();
        this.log.info({ queue: this.queue, attempts: attempt }, 'consumer reconnected');
        return;
      } catch (err) {
        this.log.warn({ err: (err as Error).message, attempt }, 'consumer cannot reconnect yet');
      }
    }
  }

  private decode(msg: ConsumeMessage): PulseMessage {
    const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
    const exchange = (headers[exchangeHeader] as string | undefined) ?? msg.fields.exchange;
    const cc = Array.isArray(headers.CC) ? (headers.CC as unknown[]).map(String) : [];
    return {
      name: exchangeNameOf(exchange, this.opts.bindings),
      exchange,
      routingKey: (headers[routingKeyHeader] as string | undefined) ?? msg.fields.routingKey,
      routes: cc.filter((r) => r.startsWith('route.')).map((r) => r.slice('route.'.length)),
      payload: JSON.parse(msg.content.toString('utf8')),
      messageId: String(msg.properties.messageId ?? ''),
      attempt: Number(headers[attemptHeader] ?? 1),
      redelivered: msg.fields.redelivered,
    } as PulseMessage;
  }

  private async handle(ch: ConfirmChannel, msg: ConsumeMessage): Promise<void> {
    let decoded: PulseMessage | undefined;
    let failure: Error | undefined;
    try {
      decoded = this.decode(msg);
      await this.opts.handler(decoded as never);
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
    }
    if (this.channel !== ch) return; // the connection went away: the broker redelivers it
    if (!failure) return ch.ack(msg);

    const attempt = decoded?.attempt ?? 1;
    const max = this.opts.maxAttempts ?? 5;
    const headers = {
      ...(msg.properties.headers ?? {}),
      [exchangeHeader]: decoded?.exchange ?? msg.fields.exchange,
      [routingKeyHeader]: decoded?.routingKey ?? msg.fields.routingKey,
      [attemptHeader]: attempt + 1,
      'x-conveyor-error': failure.message.slice(0, 500),
    };
    const props = { ...msg.properties, headers, persistent: true };
    if (decoded && attempt < max) {
      this.log.warn({ err: failure.message, messageId: decoded.messageId, attempt }, 'handler failed; retrying the message');
      await sleep((this.opts.retryDelayMs ?? 1000) * 2 ** (attempt - 1), this.stopping.signal);
      if (this.channel !== ch) return;
      ch.sendToQueue(this.queue, msg.content, props);
    } else if (this.opts.deadLetterQueue) {
      this.log.error({ err: failure.message, messageId: decoded?.messageId, attempt }, 'handler failed for the last time; dead-lettered');
      ch.sendToQueue(this.opts.deadLetterQueue, msg.content, props);
    } else {
      this.log.error({ err: failure.message, messageId: decoded?.messageId, attempt }, 'handler failed for the last time; message dropped');
      return ch.ack(msg);
    }
    // ack the original only once the copy is safely queued
    await ch.waitForConfirms();
    if (this.channel === ch) ch.ack(msg);
  }

  async stop(): Promise<void> {
    if (this.stopping.signal.aborted) return;
    this.stopping.abort();
    await this.reconnecting;
    const ch = this.channel;
    // stop deliveries, let running handlers finish and ack, then close
    if (ch && this.consumerTag) await ch.cancel(this.consumerTag).catch(() => {});
    await Promise.allSettled([...this.running]);
    this.channel = undefined;
    await ch?.close().catch(() => {});
    const conn = this.conn;
    this.conn = undefined;
    await conn?.close().catch(() => {});
  }
}
