// The claim loop: long-poll claimWork for as many tasks as there are free slots, run each, and on
// stop() quit claiming, let running tasks finish within a grace period, then abort the rest and
// report them exception/worker-shutdown so the queue retries them.
import http from 'node:http';
import https from 'node:https';
import { QueueClient, sleep } from '@conveyor/client';
import { TaskRun, type Claim } from './run.js';
import type { Logger, WorkerOptions } from './types.js';

export interface Worker {
  /** Runs currently held. */
  readonly running: number;
  /** Resolves when the worker has stopped (after stop(), or never). */
  readonly stopped: Promise<void>;
  /** Idempotent; resolves when every run is reported and the claim loop has ended. */
  stop(opts?: { graceMs?: number }): Promise<void>;
}

const quiet: Logger = { info() {}, warn() {}, error() {} };

export function createWorker(options: WorkerOptions): Worker {
  const {
    capacity, handler, taskQueueId, workerGroup, workerId,
    shutdownGraceMs = 30_000, cleanupMs = 10_000, reclaimFraction = 1 / 3, log = quiet, onRunDone,
  } = options;
  if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`capacity must be a positive integer, got ${capacity}`);
  // its own keep-alive pool, closed at stop(), so a stopped worker leaves no sockets behind
  const agent = new (options.rootUrl.startsWith('https:') ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: capacity + 2 });
  const queue = new QueueClient({ rootUrl: options.rootUrl, credentials: options.credentials, agent });
  const runs = new Set<TaskRun>();
  const polling = new AbortController();
  let stopping = false;
  let slotFreed: (() => void) | undefined;
  let stopPromise: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));

  const startRun = (claim: Claim) => {
    const run = new TaskRun(claim, { queue, handler, reclaimFraction, log }).start();
    runs.add(run);
    run.done
      .then((outcome) => onRunDone?.(outcome))
      .catch((err) => log.error({ err, taskId: run.taskId }, 'run bookkeeping failed'))
      .finally(() => {
        runs.delete(run);
        slotFreed?.();
      });
  };

  const loop = (async () => {
    let failures = 0;
    while (!stopping) {
      const free = capacity - runs.size;
      if (free <= 0) {
        await new Promise<void>((r) => (slotFreed = r));
        slotFreed = undefined;
        continue;
      }
      let claims: Claim[];
      try {
        ({ tasks: claims } = await queue.claimWork(taskQueueId, { workerGroup, workerId, tasks: free }, polling.signal));
        failures = 0;
      } catch (err) {
        if (stopping) break;
        failures += 1;
        const wait = Math.min(30_000, 500 * 2 ** failures);
        log.warn({ err, taskQueueId, retryInMs: wait }, 'claimWork failed');
        await sleep(wait, polling.signal);
        continue;
      }
      for (const claim of claims) {
        if (stopping) {
          // claimed while stop() began: hand it straight back
          const run = new TaskRun(claim, { queue, handler: async () => {}, reclaimFraction, log });
          await run.shutdown();
        } else {
          startRun(claim);
        }
      }
    }
  })();

  const stop = async (graceMs = shutdownGraceMs) => {
    stopping = true;
    // An abandoned long-poll could, in a window of milliseconds, claim tasks whose answer never
    // arrives; those runs come back through claim expiry. Waiting out a 20 s poll instead would
    // make every shutdown slow.
    polling.abort();
    slotFreed?.();
    const all = () => Promise.all([...runs].map((r) => r.done));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), graceMs)));
    if ((await Promise.race([all(), graceOver])) === 'timeout') {
      log.warn({ running: runs.size }, 'grace period over: aborting running tasks as worker-shutdown');
      const left = [...runs];
      await Promise.all(left.map((r) => r.shutdown()));
      // let aborted handlers clean up (kill processes, remove directories), within bounds
      await Promise.race([Promise.all(left.map((r) => r.done)), new Promise((r) => setTimeout(r, cleanupMs).unref())]);
    }
    clearTimeout(timer);
    await loop;
    agent.destroy();
    resolveStopped();
  };

  return {
    get running() {
      return runs.size;
    },
    stopped,
    stop: (opts = {}) => (stopPromise ??= stop(opts.graceMs)),
  };
}

/**
 * Opt-in: stop the worker on SIGTERM/SIGINT (a second signal exits at once), then exit. For
 * programs whose only job is the worker; others call stop() from their own handlers.
 */
export function stopOnSignals(worker: Worker, opts: { signals?: NodeJS.Signals[]; exit?: boolean } = {}): () => void {
  const signals = opts.signals ?? ['SIGTERM', 'SIGINT'];
  let count = 0;
  const onSignal = () => {
    count += 1;
    if (count > 1) process.exit(1);
    worker.stop().then(
      () => opts.exit !== false && process.exit(0),
      () => process.exit(1),
    );
  };
  for (const s of signals) process.on(s, onSignal);
  return () => {
    for (const s of signals) process.off(s, onSignal);
  };
}
