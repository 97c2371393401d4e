// Long-poll wake-ups: one LISTEN connection per process. A transaction that makes a run pending
// sends NOTIFY conveyor_pending '<taskQueueId>' at commit; waiting claimWork calls for that queue
// wake within milliseconds instead of polling.
//
// A notification wakes one waiter, the one waiting longest, not all of them: with hundreds of
// workers idle on a queue, waking all made hundreds of claims race for each new task (bench:
// hand-off p99 8 → 23 ms and the service's CPU +40 % from 4 to 200 waiters). A notification does
// not say how many runs became pending (PostgreSQL also folds identical ones within a
// transaction), so claimWork fans out: a claim that got all it asked for while runs stayed
// pending (the claim statement says so: take.ts) wakes two more waiters (claims/api.ts). A burst
// of n tasks reaches n waiters in about log2(n) rounds of claims, and a lone task costs one
// claim however many wait. A woken waiter that finds nothing joins the line again at its back.
import pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import { pendingChannel } from '../runs/schedule.js';

type Wake = () => void;

/** A long-poll's place among the waiters of its queue. */
export interface Waiter {
  /** Resolves on a wake, after `ms`, or when `signal` aborts; leaves the waiters either way. */
  wait(ms: number, signal?: AbortSignal): Promise<void>;
  /** Leaves the waiters (a no-op once woken). */
  cancel(): void;
  /** Whether a wake reached this waiter: one it does not act on must be passed on. */
  readonly woken: boolean;
}

export class PendingWaiters {
  private readonly waiting = new Map<string, Set<Wake>>();
  private client: pg.Client | undefined;
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** Waiters woken (by a notification, a fan-out or wakeAll), for the tests. */
  readonly stats = { woken: 0 };

  constructor(private readonly connectionString: string, private readonly log: FastifyBaseLogger) {}

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.connectionString });
    client.on('notification', (n) => {
      if (n.channel === pendingChannel && n.payload) this.wake(n.payload);
    });
    client.on('error', (err) => {
      this.log.warn({ err }, 'LISTEN connection lost; claimWork falls back to polling until it returns');
      this.scheduleReconnect();
    });
    await client.connect();
    await client.query(`LISTEN ${pendingChannel}`);
    this.client = client;
  }

  private scheduleReconnect(): void {
    this.client = undefined;
    if (this.stopped || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect().catch(() => this.scheduleReconnect());
      // anything made pending while we were away: let every waiter look again
      this.wakeAll();
    }, 1000);
  }

  /** Waiters of the queue, or of every queue (for the tests). */
  inLine(taskQueueId?: string): number {
    if (taskQueueId !== undefined) return this.waiting.get(taskQueueId)?.size ?? 0;
    let n = 0;
    for (const set of this.waiting.values()) n += set.size;
    return n;
  }

  /** Wakes the `n` longest-waiting waiters of the queue (a notification: one). */
  wake(taskQueueId: string, n = 1): void {
    const set = this.waiting.get(taskQueueId);
    if (!set) return;
    // a Set iterates in insertion order: the longest waiting first
    for (const w of set) {
      if (n-- <= 0) break;
      set.delete(w);
      this.stats.woken += 1;
      w();
    }
    if (set.size === 0) this.waiting.delete(taskQueueId);
  }

  /** Wakes everyone: at shutdown, so long-polls answer at once, and after a lost LISTEN connection. */
  wakeAll(): void {
    for (const q of [...this.waiting.keys()]) this.wake(q, Infinity);
  }

  /**
   * A place among the queue's waiters, the last. Register before looking at the table, so a
   * notification between the look and the wait is not lost; cancel (or wait) on every way out,
   * or the entry would take a wake meant for a live waiter.
   */
  register(taskQueueId: string): Waiter {
    let wake!: Wake;
    let woken = false;
    const fired = new Promise<void>((resolve) => {
      wake = () => {
        woken = true;
        resolve();
      };
    });
    let set = this.waiting.get(taskQueueId);
    if (!set) this.waiting.set(taskQueueId, (set = new Set()));
    set.add(wake);
    const cancel = () => {
      const s = this.waiting.get(taskQueueId);
      s?.delete(wake);
      if (s && s.size === 0) this.waiting.delete(taskQueueId);
    };
    return {
      wait: async (ms, signal) => {
        // an abort that happened before we got here fires no event: check it, or we'd wait it out
        if (woken || signal?.aborted) {
          cancel();
          return;
        }
        let timer: NodeJS.Timeout | undefined;
        let onAbort: (() => void) | undefined;
        // an abort ends the wait but is no wake: `woken` stays false
        const timedOutOrAborted = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, ms);
          onAbort = () => resolve();
          signal?.addEventListener('abort', onAbort, { once: true });
        });
        await Promise.race([fired, timedOutOrAborted]);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort!);
        cancel();
      },
      cancel,
      get woken() {
        return woken;
      },
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.wakeAll();
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => {});
  }
}
