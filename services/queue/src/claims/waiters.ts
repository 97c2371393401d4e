// Long-poll wake-ups: one LISTEN connection per process. A transaction that makes a run pending
// sends NOTIFY conveyor_pending '<taskQueueId>' at commit; waiting claimWork calls for that queue
// wake within milliseconds instead of polling.
import pg from 'pg';
import type { FastifyBaseLogger } from 'fastify';
import { pendingChannel } from '../runs/schedule.js';

type Wake = () => void;

export class PendingWaiters {
  private readonly waiting = new Map<string, Set<Wake>>();
  private client: pg.Client | undefined;
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;

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
      for (const q of this.waiting.keys()) this.wake(q);
    }, 1000);
  }

  /** Wakes every waiter of the queue (they race with SKIP LOCKED; losers wait again). */
  wake(taskQueueId: string): void {
    const set = this.waiting.get(taskQueueId);
    if (!set) return;
    this.waiting.delete(taskQueueId);
    for (const w of set) w();
  }

  /** Wakes everyone: used at shutdown so long-polls answer at once. */
  wakeAll(): void {
    for (const q of [...this.waiting.keys()]) this.wake(q);
  }

  /**
   * Resolves on a notification for the queue, after `ms`, or when `signal` aborts. Register
   * before looking at the table, so a notification between the look and the wait is not lost.
   */
  register(taskQueueId: string): { wait(ms: number, signal?: AbortSignal): Promise<void>; cancel(): void } {
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
        const onAbort = () => wake();
        signal?.addEventListener('abort', onAbort, { once: true });
        await Promise.race([fired, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        cancel();
      },
      cancel,
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
