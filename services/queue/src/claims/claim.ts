// Claiming: pending runs of a task queue → running, priority first then FIFO. Concurrent claims
// (claimWork long-polls on any queues, the built-in queues) share one transaction: a batcher
// gathers them and one set-based statement serves them all (take.ts) and writes their messages
// and worker rows — 1 round trip however many claims it holds. Locks pending rows with SKIP
// LOCKED (concurrent batches take different rows), then moves each run with its precondition in
// the WHERE clause; no task-row lock, see runs/README.md.
import type { TaskStatus } from '../tasks/status.js';
import type { Ctx } from '../context.js';
import { Batcher, batcherPerService, type Outcome } from '../db/batcher.js';
import { claimAnswer } from './finish.js';
import { takePending, type ClaimRequest } from './take.js';

export interface Claim {
  status: TaskStatus;
  runId: number;
  workerGroup: string;
  workerId: string;
  takenUntil: string;
  task: Record<string, unknown>;
  credentials: { clientId: string; accessToken: string; certificate: string };
}

export interface Claimer {
  taskQueueId: string;
  workerGroup: string;
  workerId: string;
}

/** takenUntil for a claim made now: whole seconds, as Taskcluster rounds claims up. */
export function claimUntil(ctx: Ctx): Date {
  const ms = ctx.clock.now().getTime() + ctx.config.taskClaimTimeoutSec * 1000;
  return new Date(Math.ceil(ms / 1000) * 1000);
}

export interface Claimed {
  /** Up to the count asked for; [] when none. */
  claims: Claim[];
  /** Whether the queue kept pending runs past this claim (take.ts); false when it got nothing. */
  morePending: boolean;
}

/** Up to `count` pending runs of the claimer's queue, now running on its name. */
export async function claimPending(ctx: Ctx, who: Claimer, count: number): Promise<Claimed> {
  return claimBatcher(ctx).submit({ who, count });
}

// Two lanes: while one batch is in its round trips and commit, the other gathers the claims that
// arrive meanwhile and runs as soon as it can; more lanes would only make batches smaller and
// need more of the batch pool (8 connections, one per lane of the four batchers; app.ts) while
// the two cores are already busy. A quiet service pays nothing: a claim that finds a lane free
// starts on the next turn of the event loop. 64 requests (at most 32 tasks each from claimWork)
// bound one transaction's size and its answer's wait.
export const claimBatcher = batcherPerService(
  (ctx: Ctx) => new Batcher<ClaimRequest, Claimed>((items) => serveClaims(ctx, items), { name: 'claimWork', maxBatch: 64, lanes: 2 }),
);

async function serveClaims(ctx: Ctx, items: ClaimRequest[]): Promise<Array<Outcome<Claimed>>> {
  const takenUntil = claimUntil(ctx);
  const taken = await takePending(ctx, items, takenUntil);
  return taken.map(({ rows, morePending }) => ({
    ok: true as const,
    value: { claims: rows.map((row) => claimAnswer(ctx, row, takenUntil)), morePending },
  }));
}
