// The publisher: one connection, one confirm channel, the catalogue's durable topic exchanges
// declared on every connect. `publish(batch)` resolves only when the broker has confirmed every
// message of the batch; any failure tears the connection down so the next call starts clean.
// Persistence of what is not yet confirmed is the caller's job (the queue's outbox), never an
// in-memory buffer here.
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { backoffDelay, silentLog, sleep, type BackoffOptions, type PulseLog } from './backoff.js';
import { exchanges } from './exchanges.js';

export interface OutgoingMessage {
  /** Full exchange name, prefix included. */
  exchange: string;
  routingKey: string;
  /** The JSON body, as text or bytes. */
  content: string | Buffer;
  /** Stable per message, so listeners can drop duplicates. */
  messageId: string;
  /** Extra routing keys (`route.<r>`), RabbitMQ's sender-selected distribution. */
  cc?: string[];
}

export interface PublisherOptions {
  url: string;
  /** Prefix of the catalogue's exchanges, declared at every connect. */
  exchangePrefix?: string;
  /** AMQP heartbeat; a silent broker is noticed after about twice this (default 15 s). */
  heartbeatSec?: number;
  /** A batch whose confirms take longer fails and the connection is replaced (default 15 s). */
  confirmTimeoutMs?: number;
  backoff?: BackoffOptions;
  log?: PulseLog;
  /** Shown in RabbitMQ's management UI. */
  connectionName?: string;
}

export function withHeartbeat(url: string, heartbeatSec: number): string {
  try {
    const u = new URL(url);
    if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(heartbeatSec));
    return u.toString();
  } catch {
    return url;
  }
}

export class Publisher {
  private conn: ChannelModel | undefined;
  private channel: ConfirmChannel | undefined;
  private declared = new Set<string>();
  private closing = false;
  private readonly log: PulseLog;
  /** Why the last connection ended, for health reports. */
  lastError: string | undefined;

  constructor(private readonly opts: PublisherOptions) {
    this.log = opts.log ?? silentLog;
  }

  get connected(): boolean {
    return this.channel !== undefined;
  }

  /** Connects, retrying with backoff until it succeeds or `signal` aborts (then it throws). */
  async connect(signal?: AbortSignal): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if (this.channel) return;
      if (signal?.aborted || this.closing) throw new Error('publisher stopped before it could connect');
      try {
        await this.connectOnce();
        if (attempt > 1) this.log.info({ attempts: attempt }, 'connected to RabbitMQ');
        return;
      } catch (err) {
        this.lastError = (err as Error).message;
        const delay = backoffDelay(attempt, this.opts.backoff);
        this.log.warn({ err: this.lastError, attempt, retryInMs: delay }, 'cannot reach RabbitMQ; retrying');
        await sleep(delay, signal);
      }
    }
  }

  private async connectOnce(): Promise<void> {
    const conn = await amqp.connect(withHeartbeat(this.opts.url, this.opts.heartbeatSec ?? 15), {
      // a handshake that never completes (broker half-up, blackholed) must fail, not hang
      timeout: 10_000,
      clientProperties: { connection_name: this.opts.connectionName ?? 'conveyor-publisher' },
    });
    const lost = (err?: Error) => {
      if (this.conn !== conn) return;
      if (err) this.lastError = err.message;
      this.log.warn({ err: err?.message }, 'RabbitMQ connection lost');
      this.reset();
    };
    conn.on('error', lost);
    conn.on('close', lost);
    try {
      const ch = await conn.createConfirmChannel();
      ch.on('error', (err: Error) => {
        this.lastError = err.message;
      });
      ch.on('close', () => {
        // a channel error (e.g. a missing exchange) closes only the channel: start over
        if (this.channel === ch) void this.drop();
      });
      this.conn = conn;
      this.declared = new Set();
      if (this.opts.exchangePrefix !== undefined) {
        for (const e of Object.values(exchanges)) await this.declare(ch, this.opts.exchangePrefix + e.name);
      }
      this.channel = ch;
    } catch (err) {
      await conn.close().catch(() => {});
      throw err;
    }
  }

  private async declare(ch: ConfirmChannel, exchange: string): Promise<void> {
    await ch.assertExchange(exchange, 'topic', { durable: true, autoDelete: false });
    this.declared.add(exchange);
  }

  private reset(): void {
    this.conn = undefined;
    this.channel = undefined;
  }

  /** Drops the connection; the next connect() makes a new one. */
  async drop(): Promise<void> {
    const conn = this.conn;
    this.reset();
    await conn?.close().catch(() => {});
  }

  /**
   * Publishes a batch in order and waits for the broker's confirms. Throws if any message is
   * nacked, the connection fails, or confirms take longer than the timeout; the connection is
   * then dropped and nothing of the batch may be assumed delivered.
   */
  async publish(batch: OutgoingMessage[]): Promise<void> {
    await (await this.send(batch)).confirmed;
  }

  /**
   * Writes a batch in order and returns, without waiting, a promise of its confirms (same failure
   * rules as publish). Lets a caller prepare the next batch while the broker confirms this one;
   * batches sent on one connection reach a queue in the order they were sent.
   */
  async send(batch: OutgoingMessage[]): Promise<{ confirmed: Promise<void> }> {
    const ch = this.channel;
    if (!ch) throw new Error('not connected to RabbitMQ');
    try {
      // exchanges outside the catalogue's prefix (rows written under an older prefix)
      for (const m of batch) if (!this.declared.has(m.exchange)) await this.declare(ch, m.exchange);
      let pending = batch.length;
      let settle!: (err?: Error) => void;
      const acked = new Promise<void>((resolve, reject) => {
        settle = (err) => (err ? reject(err) : resolve());
      });
      if (pending === 0) settle();
      const onConfirm = (err: unknown) => {
        if (err) return settle(err instanceof Error ? err : new Error(`message nacked by the broker: ${String(err)}`));
        if (--pending === 0) settle();
      };
      for (const m of batch) {
        const ok = ch.publish(
          m.exchange,
          m.routingKey,
          typeof m.content === 'string' ? Buffer.from(m.content) : m.content,
          { persistent: true, contentType: 'application/json', contentEncoding: 'utf-8', messageId: m.messageId, CC: m.cc ?? [] },
          onConfirm,
        );
        if (!ok) await new Promise<void>((resolve) => ch.once('drain', resolve));
      }
      const confirmed = this.withTimeout(acked).catch(async (err: Error) => {
        this.lastError = err.message;
        if (this.channel === ch) await this.drop();
        throw err;
      });
      confirmed.catch(() => {}); // the caller may look only later
      // wrapped: an async function would otherwise wait for the promise it returns
      return { confirmed };
    } catch (err) {
      this.lastError = (err as Error).message;
      await this.drop();
      throw err;
    }
  }

  private async withTimeout(confirms: Promise<void>): Promise<void> {
    const timeoutMs = this.opts.confirmTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        confirms,
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`no publisher confirms within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.drop();
  }
}
