// The settled tail of the outbox, for the HTTP event stream: delivers rows in id order such that once
// id N is delivered, no row with a smaller id can still appear. That is what makes `Last-Event-ID`
// (an outbox id) a safe resume point.
//
// Ids come from a sequence when the row is inserted, not when it commits, so a reader can see id
// 102 committed while 101 is still in flight (or rolled back). The tail stops at such a gap and
// notes the transactions of this database that are running right after the read (the one holding
// the missing id is among them: writeOutbox takes its xid before its ids, see write.ts). Once all of
// them have ended, a new read shows every id of the gap that committed, and the ids still missing up
// to the highest id seen at the gap were rolled back. Only this database's transactions count, so a
// long transaction elsewhere on the cluster does not stall the stream (it reads pg_stat_activity,
// which shows the xids of sessions of the same role; Conveyor's processes share one). One process
// reads once for all its subscribers.
import type { FastifyBaseLogger } from 'fastify';
import pg from 'pg';
import { outboxTextColumns, toEvent, type OutboxEvent, type OutboxTextRow } from './rows.js';
import { outboxChannel } from './write.js';

export type { OutboxEvent } from './rows.js';

type Listener = (events: OutboxEvent[]) => void;

const batchSize = 1000;
/** Re-read while a gap is open: a rolled-back transaction sends no NOTIFY. */
const gapRecheckMs = 20;

export class OutboxTail {
  private cursor = 0n;
  private gap: { upTo: bigint; running: string[] } | undefined;
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

  /** xids of this database's transactions running now. */
  private async runningNow(client: pg.Client): Promise<string[]> {
    const r = await client.query<{ xids: string[] | null }>(
      `SELECT array_agg(backend_xid::text) AS xids FROM pg_stat_activity
       WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()`,
    );
    return r.rows[0]!.xids ?? [];
  }

  private async anyStillRunning(client: pg.Client, xids: string[]): Promise<boolean> {
    if (xids.length === 0) return false;
    const r = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND backend_xid::text = ANY($1::text[])`,
      [xids],
    );
    return r.rows[0]!.n > 0;
  }

  /** Start at the highest id, once every transaction that could still commit a lower one has ended. */
  private async settleStart(client: pg.Client): Promise<void> {
    const r = await client.query<{ max: string }>('SELECT coalesce(max(id), 0)::text AS max FROM outbox');
    const running = await this.runningNow(client);
    while ((await this.anyStillRunning(client, running)) && !this.stopping.signal.aborted) {
      await new Promise((res) => setTimeout(res, gapRecheckMs));
    }
    this.cursor = BigInt(r.rows[0]!.max);
  }

  /** One read after the cursor; delivers what is settled. True when the batch was full. */
  private async step(client: pg.Client): Promise<boolean> {
    const gap = this.gap;
    // checked before the read, so the read's snapshot sees whatever those transactions committed
    const resolved = gap !== undefined && !(await this.anyStillRunning(client, gap.running));
    const { rows: found } = await client.query<OutboxTextRow>(
      `SELECT ${outboxTextColumns} FROM outbox WHERE id > $1 ORDER BY outbox.id LIMIT $2`,
      [this.cursor.toString(), batchSize],
    );
    const out: OutboxEvent[] = [];
    let blocked = false;
    for (const r of found) {
      const id = BigInt(r.id);
      if (id !== this.cursor + 1n && resolved && this.cursor < gap.upTo) {
        // the gap's transactions are over: ids up to upTo missing from this snapshot were rolled back
        this.cursor = id - 1n < gap.upTo ? id - 1n : gap.upTo;
      }
      if (id !== this.cursor + 1n) {
        blocked = true;
        break;
      }
      out.push(toEvent(r));
      this.cursor = id;
    }
    if (resolved) {
      if (!blocked && found.length < batchSize && this.cursor < gap.upTo) this.cursor = gap.upTo;
      if (this.cursor >= gap.upTo) this.gap = undefined;
    }
    // delivered before any further await, so a new subscriber's cursor never runs ahead of delivery
    if (out.length > 0) {
      for (const l of [...this.listeners]) {
        try {
          l(out);
        } catch (err) {
          this.log.error({ err }, 'event stream listener failed');
        }
      }
    }
    if (blocked && this.gap === undefined) {
      this.gap = { upTo: BigInt(found[found.length - 1]!.id), running: await this.runningNow(client) };
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
