// The settled tail of the outbox, for the HTTP event stream: delivers rows in id order such that once
// id N is delivered, no row with a smaller id can still appear. That is what makes `Last-Event-ID`
// (an outbox id) a safe resume point.
//
// Ids come from a sequence when the row is inserted, not when it commits, so a reader can see id
// 102 committed while 101 is still in flight (or rolled back). The tail stops at such a gap and
// takes a barrier: `pg_current_xact_id()` of a fresh transaction, larger than the xid of every
// transaction that already held an id at the time of the read (writeOutbox takes its xid before its
// ids; see write.ts). Once the snapshot's xmin passes the barrier, all those transactions have ended:
// a read from that snapshot shows every id of the gap that committed, and the ids still missing up to
// the highest id seen at the gap were rolled back. One process reads once for all its subscribers.
import type { FastifyBaseLogger } from 'fastify';
import pg from 'pg';
import { outboxChannel } from './write.js';

export interface OutboxEvent {
  id: bigint;
  exchange: string;
  routingKey: string;
  cc: string[];
  /** The body as JSON text. */
  body: string;
  created: Date;
}

type Listener = (events: OutboxEvent[]) => void;

interface Row {
  xmin: string;
  id: string | null;
  exchange: string;
  routing_key: string;
  cc: string[];
  body: string;
  created: Date;
}

const batchSize = 1000;
/** Re-read while a gap is open: a rolled-back transaction sends no NOTIFY. */
const gapRecheckMs = 20;

export class OutboxTail {
  private cursor = 0n;
  private gap: { upTo: bigint; barrier: bigint } | undefined;
  private readonly listeners = new Set<Listener>();
  private readonly stopping = new AbortController();
  private client: pg.Client | undefined;
  private notified = false;
  private wakeUp: (() => void) | undefined;
  private readonly readyPromise: Promise<void>;
  private markReady!: () => void;
  private done: Promise<void> | undefined;

  constructor(private readonly databaseUrl: string, private readonly log: FastifyBaseLogger, private readonly pollMs = 1000) {
    this.readyPromise = new Promise((r) => (this.markReady = r));
  }

  /** Starts reading (once); resolves when the starting cursor is settled. */
  ready(): Promise<void> {
    this.done ??= this.run();
    return this.readyPromise;
  }

  /** Registers a listener for events after the returned cursor (every id up to it is settled). */
  subscribe(listener: Listener): { cursor: bigint; unsubscribe(): void } {
    this.listeners.add(listener);
    return { cursor: this.cursor, unsubscribe: () => this.listeners.delete(listener) };
  }

  private async run(): Promise<void> {
    let started = false;
    for (let failures = 0; !this.stopping.signal.aborted; ) {
      const client = new pg.Client({ connectionString: this.databaseUrl, keepAlive: true, query_timeout: 30_000 });
      client.on('error', () => {});
      client.on('notification', (n) => {
        if (n.channel === outboxChannel) this.wake();
      });
      try {
        await client.connect();
        this.client = client;
        // the barrier transactions write nothing worth an fsync
        await client.query('SET synchronous_commit = off');
        await client.query(`LISTEN ${outboxChannel}`);
        if (!started) {
          await this.settleStart(client);
          started = true;
          this.markReady();
        }
        failures = 0;
        while (!this.stopping.signal.aborted) {
          const full = await this.step(client);
          if (!full) await this.waitForWork(this.gap ? gapRecheckMs : this.pollMs);
        }
      } catch (err) {
        failures += 1;
        if (!this.stopping.signal.aborted) this.log.warn({ err: (err as Error).message }, 'event stream lost its database connection; retrying');
      } finally {
        this.client = undefined;
        await client.end().catch(() => {});
      }
      if (!this.stopping.signal.aborted) await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** failures)));
    }
  }

  private async barrier(client: pg.Client): Promise<bigint> {
    const r = await client.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid');
    return BigInt(r.rows[0]!.xid);
  }

  /** Start at the highest id, once every transaction that could still commit a lower one has ended. */
  private async settleStart(client: pg.Client): Promise<void> {
    const r = await client.query<{ max: string }>('SELECT coalesce(max(id), 0)::text AS max FROM outbox');
    const barrier = await this.barrier(client);
    for (;;) {
      const s = await client.query<{ xmin: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin');
      if (BigInt(s.rows[0]!.xmin) >= barrier || this.stopping.signal.aborted) break;
      await new Promise((res) => setTimeout(res, gapRecheckMs));
    }
    this.cursor = BigInt(r.rows[0]!.max);
  }

  /** One read after the cursor; delivers what is settled. True when the batch was full. */
  private async step(client: pg.Client): Promise<boolean> {
    // one statement: the rows and the xmin come from the same snapshot
    const { rows } = await client.query<Row>(
      `WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin)
       SELECT s.xmin, o.id::text AS id, o.exchange, o.routing_key, o.cc, o.body::text AS body, o.created
       FROM s LEFT JOIN LATERAL (SELECT * FROM outbox WHERE id > $1 ORDER BY id LIMIT $2) o ON true`,
      [this.cursor.toString(), batchSize],
    );
    const xmin = BigInt(rows[0]!.xmin);
    const found = rows.filter((r) => r.id !== null);
    const gap = this.gap;
    const resolved = gap !== undefined && xmin >= gap.barrier;
    const out: OutboxEvent[] = [];
    let blocked = false;
    for (const r of found) {
      const id = BigInt(r.id!);
      if (id !== this.cursor + 1n && resolved && this.cursor < gap.upTo) {
        // the gap's transactions are over: ids up to upTo missing from this snapshot were rolled back
        this.cursor = id - 1n < gap.upTo ? id - 1n : gap.upTo;
      }
      if (id !== this.cursor + 1n) {
        blocked = true;
        break;
      }
      out.push({ id, exchange: r.exchange, routingKey: r.routing_key, cc: r.cc, body: r.body, created: r.created });
      this.cursor = id;
    }
    if (resolved) {
      if (!blocked && found.length < batchSize && this.cursor < gap.upTo) this.cursor = gap.upTo;
      if (this.cursor >= gap.upTo) this.gap = undefined;
    }
    if (blocked && this.gap === undefined) {
      this.gap = { upTo: BigInt(found[found.length - 1]!.id!), barrier: await this.barrier(client) };
    }
    if (out.length > 0) {
      for (const l of [...this.listeners]) {
        try {
          l(out);
        } catch (err) {
          this.log.error({ err }, 'event stream listener failed');
        }
      }
    }
    return found.length === batchSize && !blocked;
  }

  private wake(): void {
    this.notified = true;
    this.wakeUp?.();
  }

  private async waitForWork(ms: number): Promise<void> {
    if (!this.notified) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
        if (this.stopping.signal.aborted) this.wakeUp();
      });
      this.wakeUp = undefined;
    }
    this.notified = false;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.wake();
    this.markReady();
    await this.done;
  }
}
