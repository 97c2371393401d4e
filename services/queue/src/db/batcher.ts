// Coalescing concurrent calls into shared transactions.
//
// Under load the hot calls (createTask, claimWork, the reports) arrive many at a time, and each
// one as its own transaction costs ~6-9 round trips and a commit. A batcher gathers the calls that
// arrive while earlier batches are in flight and hands them to one function that serves them all
// in one transaction with set-based statements: the round trips and the commit are shared.
//
// Latency stays what it was when the service is quiet: a call that finds a free lane starts its
// batch on the next turn of the event loop (gathering only what arrived in the same turn); calls
// wait only while every lane is busy, which is exactly when sharing pays.
//
// Each item settles on its own: the batch function returns an outcome per item (an ApiError for a
// conflict, say). When the batch function throws as a whole — a deadlock, a serialization failure,
// a bug that one odd item triggers — nothing was committed, and each item is run again in a batch
// of its own, so one item's trouble fails that item only.

import client from 'prom-client';
import { registry } from '../meta/metrics.js';

// Once per batch, not per call: cheap next to the transaction it describes.
const batchSize = new client.Histogram({
  name: 'conveyor_batch_size',
  help: 'Calls served by one shared transaction, by operation',
  labelNames: ['operation'] as const,
  buckets: [1, 2, 4, 8, 16, 32, 64],
  registers: [registry],
});
const batchFallbacks = new client.Counter({
  name: 'conveyor_batch_fallbacks_total',
  help: 'Batches that failed as a whole (deadlock, serialization failure, bug) and were re-run one call at a time',
  labelNames: ['operation'] as const,
  registers: [registry],
});

export type Outcome<O> = { ok: true; value: O } | { ok: false; error: unknown };

export interface BatcherOptions {
  /** The operation, as the metrics label it. */
  name?: string;
  /** Most items served by one call of the batch function. */
  maxBatch: number;
  /** Batches in flight at once (each holds one pool connection while it runs). */
  lanes: number;
}

interface Waiting<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

export class Batcher<I, O> {
  private queue: Array<Waiting<I, O>> = [];
  private busy = 0;
  private scheduled = false;
  /** Batches run and items served, for the metrics and the bench. */
  readonly stats = { batches: 0, items: 0, fallbacks: 0 };

  constructor(
    private readonly serve: (items: I[]) => Promise<Array<Outcome<O>>>,
    private readonly options: BatcherOptions,
  ) {}

  /** Items waiting for a lane (tests wait on it to know what the next batch will hold). */
  get queued(): number {
    return this.queue.length;
  }

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.busy >= this.options.lanes || this.queue.length === 0) return;
    this.scheduled = true;
    // the rest of this event-loop turn's requests join the batch
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.busy < this.options.lanes && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.maxBatch);
      this.busy += 1;
      void this.runBatch(batch).finally(() => {
        this.busy -= 1;
        this.schedule();
      });
    }
  }

  private async runBatch(batch: Array<Waiting<I, O>>): Promise<void> {
    this.stats.batches += 1;
    this.stats.items += batch.length;
    batchSize.observe({ operation: this.options.name ?? 'other' }, batch.length);
    let outcomes: Array<Outcome<O>>;
    try {
      outcomes = await this.serve(batch.map((w) => w.item));
    } catch (error) {
      if (batch.length === 1) {
        batch[0]!.reject(error);
        return;
      }
      // nothing of the batch was committed: each item again, alone
      this.stats.fallbacks += 1;
      batchFallbacks.inc({ operation: this.options.name ?? 'other' });
      await Promise.all(batch.map((w) => this.runBatch([w])));
      return;
    }
    batch.forEach((w, i) => {
      const o = outcomes[i];
      if (o === undefined) w.reject(new Error(`batch function returned ${outcomes.length} outcomes for ${batch.length} items`));
      else if (o.ok) w.resolve(o.value);
      else w.reject(o.error);
    });
  }
}

/**
 * One batcher per service, keyed by its Ctx: the batch function serves every item with that
 * service's database, clock and configuration (a process can hold several services, as tests do).
 */
export function batcherPerService<K extends object, I, O>(
  make: (key: K) => Batcher<I, O>,
): (key: K) => Batcher<I, O> {
  const byKey = new WeakMap<K, Batcher<I, O>>();
  return (key) => {
    let b = byKey.get(key);
    if (!b) byKey.set(key, (b = make(key)));
    return b;
  };
}
