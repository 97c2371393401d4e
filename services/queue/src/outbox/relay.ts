// The outbox relay: publishes committed outbox rows to RabbitMQ in id order and marks them
// published only after the broker confirmed them. A crash anywhere between publish and mark
// replays the batch: duplicates (same messageId), never a loss.
//
// One relay is active per database: it holds a session advisory lock on a dedicated connection,
// and every read and mark goes through that connection, so a relay that loses its connection (and
// with it the lock) can no longer mark anything. Replicas that do not get the lock stand by and try
// again. The active relay LISTENs on conveyor_outbox (sent by writeOutbox at commit) and polls as a
// fallback. When RabbitMQ goes away it keeps the lock, reconnects with backoff and catches up; the
// API keeps committing to the outbox meanwhile.
import { Publisher, sleep, type OutgoingMessage } from '@conveyor/pulse';
import type { FastifyBaseLogger } from 'fastify';
import pg from 'pg';
import type { Config } from '../config.js';
import type { Service } from '../services.js';
import { publishedTotal, publishFailuresTotal, relayActive } from './metrics.js';
import { outboxTextColumns, type OutboxTextRow } from './rows.js';
import { outboxChannel } from './write.js';

/** Batches written to the broker before the oldest must be confirmed and marked. */
const pipelineDepth = 4;

/** pg_advisory_lock key of the relay (advisory locks are per database). */
export const relayLockKey = 7_316_300_001;

export interface RelayDeps {
  config: Config;
  log: FastifyBaseLogger;
}

export interface RelayStatus {
  role: 'starting' | 'standby' | 'active' | 'stopped';
  brokerConnected: boolean;
  /** Messages confirmed and marked by this process. */
  published: number;
  lastError?: string;
  lastPublishedAt?: string;
}

const toMessage = (r: OutboxTextRow): OutgoingMessage => ({
  exchange: r.exchange,
  routingKey: r.routing_key,
  content: r.body,
  messageId: r.id,
  cc: r.cc,
});

export class OutboxRelay implements Service {
  readonly name = 'outbox-relay';
  readonly status: RelayStatus = { role: 'starting', brokerConnected: false, published: 0 };
  private readonly stopping = new AbortController();
  private readonly publisher: Publisher;
  private client: pg.Client | undefined;
  private wakeUp: (() => void) | undefined;
  private notified = false;
  private done: Promise<void> | undefined;

  constructor(private readonly deps: RelayDeps) {
    const { config, log } = deps;
    this.publisher = new Publisher({
      url: config.amqpUrl!,
      exchangePrefix: config.exchangePrefix,
      backoff: { maxMs: config.amqpReconnectMaxMs },
      log: log.child({ component: 'relay' }),
      connectionName: 'conveyor-outbox-relay',
    });
  }

  start(): this {
    this.done ??= this.run();
    return this;
  }

  private get log() {
    return this.deps.log;
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  /** Leader election around the publishing loop; any database failure starts over. */
  private async run(): Promise<void> {
    for (let failures = 0; !this.stopped; ) {
      const client = new pg.Client({
        connectionString: this.deps.config.databaseUrl,
        keepAlive: true,
        // a dead connection must not hang the relay (and with it the lock) forever
        query_timeout: 30_000,
      });
      client.on('error', (err) => {
        this.status.lastError = err.message;
      });
      client.on('notification', (n) => {
        if (n.channel === outboxChannel) this.wake();
      });
      try {
        await client.connect();
        this.client = client;
        // A mark lost in a crash only re-publishes its rows (duplicates, never a loss), so the
        // marks need not wait for the WAL flush, which is most of a commit on a busy disk.
        await client.query('SET synchronous_commit = off');
        if (await this.acquire(client)) {
          failures = 0;
          await client.query(`LISTEN ${outboxChannel}`);
          this.log.info('outbox relay active');
          await this.publishLoop(client);
        }
      } catch (err) {
        failures += 1;
        this.status.lastError = (err as Error).message;
        this.log.warn({ err: (err as Error).message }, 'outbox relay lost its database connection; starting over');
      } finally {
        relayActive.set(0);
        this.client = undefined;
        this.status.role = this.stopped ? 'stopped' : 'starting';
        await client.end().catch(() => {});
      }
      if (!this.stopped) await sleep(Math.min(5000, 250 * 2 ** failures), this.stopping.signal);
    }
    await this.publisher.close();
    this.status.brokerConnected = false;
    this.status.role = 'stopped';
  }

  /** Waits for the lock; false when stopped first. */
  private async acquire(client: pg.Client): Promise<boolean> {
    while (!this.stopped) {
      const r = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [relayLockKey]);
      if (r.rows[0]!.locked) {
        this.status.role = 'active';
        return true;
      }
      if (this.status.role !== 'standby') this.log.info('another outbox relay is active; standing by');
      this.status.role = 'standby';
      await sleep(this.deps.config.relayPollIntervalMs * 2, this.stopping.signal);
    }
    return false;
  }

  /**
   * Pipelined: up to `pipelineDepth` batches are written to the broker before the oldest one's
   * confirms are awaited and it is marked, so a slow hop (broker, database, a busy machine) costs
   * throughput only once per window. Batches go out in id order on one channel, so per-task order
   * holds; a broker failure drops the whole window, whose rows go out again.
   */
  private async publishLoop(client: pg.Client): Promise<void> {
    const batchSize = this.deps.config.relayBatchSize;
    let inflight: Array<{ ids: string[]; confirmed: Promise<void> }> = [];
    try {
      while (!this.stopped) {
        if (!this.publisher.connected) {
          inflight = []; // unconfirmed: their rows stay unpublished and go out again
          this.status.brokerConnected = false;
          relayActive.set(0);
          try {
            await this.publisher.connect(this.stopping.signal);
          } catch {
            return; // stopped while RabbitMQ was away
          }
          this.status.brokerConnected = true;
          relayActive.set(1);
          this.log.info('outbox relay connected to RabbitMQ');
        }
        const rows = await this.nextBatch(client, batchSize, inflight.flatMap((b) => b.ids));
        if (rows.length > 0) {
          try {
            inflight.push({ ids: rows.map((r) => r.id), confirmed: (await this.publisher.send(rows.map(toMessage))).confirmed });
          } catch (err) {
            this.brokerFailed(err as Error, rows.length);
            continue;
          }
        }
        if (rows.length === batchSize && inflight.length < pipelineDepth) continue;
        const oldest = inflight[0];
        if (!oldest) {
          await this.waitForWork();
          continue;
        }
        // new rows committed while the oldest batch awaits its confirms go out first (latency)
        if (inflight.length < pipelineDepth && (await this.waitForWork(oldest.confirmed))) continue;
        inflight.shift();
        await this.markWhenConfirmed(client, oldest);
      }
    } finally {
      // stopping: finish the batches in flight (their confirms and marks)
      for (const b of inflight) if (this.publisher.connected) await this.markWhenConfirmed(client, b);
    }
  }

  private async nextBatch(client: pg.Client, limit: number, exclude: string[]): Promise<OutboxTextRow[]> {
    const { rows } = await client.query<OutboxTextRow>(
      `SELECT ${outboxTextColumns} FROM outbox
       WHERE published IS NULL AND id <> ALL($2::bigint[]) ORDER BY outbox.id LIMIT $1`,
      [limit, exclude],
    );
    return rows;
  }

  /** Marks a batch published once the broker confirmed all of it; on a broker failure, leaves it. */
  private async markWhenConfirmed(client: pg.Client, batch: { ids: string[]; confirmed: Promise<void> }): Promise<void> {
    try {
      await batch.confirmed;
    } catch (err) {
      this.brokerFailed(err as Error, batch.ids.length);
      return;
    }
    await client.query('UPDATE outbox SET published = now() WHERE id = ANY($1::bigint[])', [batch.ids]);
    this.status.published += batch.ids.length;
    publishedTotal.inc(batch.ids.length);
    this.status.lastPublishedAt = new Date().toISOString();
  }

  private brokerFailed(err: Error, rows: number): void {
    publishFailuresTotal.inc();
    relayActive.set(0);
    this.status.brokerConnected = false;
    this.status.lastError = err.message;
    this.log.warn({ err: err.message, rows }, 'publishing failed; the batch stays in the outbox');
  }

  private wake(): void {
    this.notified = true;
    this.wakeUp?.();
  }

  /**
   * Resolves on a NOTIFY (true), or false on the poll interval, on stopping, or when `also`
   * settles first.
   */
  private async waitForWork(also?: Promise<unknown>): Promise<boolean> {
    if (!this.notified && !this.stopped) {
      await new Promise<void>((resolve) => {
        const finish = () => {
          clearTimeout(timer);
          this.stopping.signal.removeEventListener('abort', finish);
          resolve();
        };
        const timer = setTimeout(finish, this.deps.config.relayPollIntervalMs);
        this.stopping.signal.addEventListener('abort', finish, { once: true });
        this.wakeUp = finish;
        also?.then(finish, finish);
      });
      this.wakeUp = undefined;
    }
    const notified = this.notified;
    this.notified = false;
    return notified;
  }

  /** Finishes the batch in flight (its confirms and marks), then lets go of the lock and RabbitMQ. */
  async stop(): Promise<void> {
    this.stopping.abort();
    this.wake();
    await this.done;
  }
}
