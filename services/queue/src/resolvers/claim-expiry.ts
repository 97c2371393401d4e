// Claim expiry: a running run whose takenUntil passed without a reclaim becomes
// exception/claim-expired, with a `retry` run while retries remain (task-exception, then
// task-pending). The worker's late report then meets a run that is no longer running: 409.
// A task past its deadline is left to the deadline loop (deadline-exceeded, no retry), as in
// Taskcluster.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import { defineLoop, type LoopResult } from '../loops/loop.js';
import { resolveRun } from '../runs/resolve.js';
import { eachLimited, withFreeTask } from './free-task.js';

const batchSize = 100;
const concurrency = 4;
/** A due run whose task another transaction held is looked at again this soon. */
const retryBusyMs = 50;

export async function expireClaims(ctx: Ctx): Promise<LoopResult> {
  const now = ctx.clock.now();
  // runs_taken_until covers only running runs
  const due = await sql<{ task_id: string; run_id: number }>`
    SELECT r.task_id, r.run_id FROM runs r JOIN tasks t ON t.task_id = r.task_id
    WHERE r.state = 'running' AND r.taken_until <= ${now} AND t.deadline > ${now}
    ORDER BY r.taken_until LIMIT ${batchSize}`.execute(ctx.db);
  let handled = 0;
  let busy = 0;
  const failed = await eachLimited(ctx, 'claim-expiry', due.rows, concurrency, async ({ task_id, run_id }) => {
    const changed = await withFreeTask(ctx, task_id, async (trx, t) => {
      const run = t.runs[run_id];
      const latest = run_id === t.runs.length - 1;
      const at = ctx.clock.now();
      // reclaimed, resolved or past its deadline since we looked: nothing to do
      if (!run || !latest || run.state !== 'running' || !run.taken_until || new Date(run.taken_until) > at || new Date(t.task.deadline) <= at) {
        return { result: false, messages: [] };
      }
      const outcome = await resolveRun(ctx, trx, t, run_id, { state: 'exception', reason: 'claim-expired', retry: 'retry' });
      return { result: true, messages: outcome.messages };
    });
    if (changed === undefined) busy += 1;
    else if (changed) handled += 1;
  });
  return {
    handled,
    full: due.rows.length === batchSize && failed === 0,
    // after a failure, not sooner than the interval: the failed item is still due
    nextDueMs: failed > 0 ? undefined : busy > 0 ? retryBusyMs : await msUntilNext(ctx),
  };
}

/** Milliseconds until the next claim falls due, so the loop wakes for it rather than a poll later. */
async function msUntilNext(ctx: Ctx): Promise<number | undefined> {
  const now = ctx.clock.now();
  const next = await sql<{ at: Date | null }>`
    SELECT min(taken_until) AS at FROM runs WHERE state = 'running' AND taken_until > ${now}`.execute(ctx.db);
  const at = next.rows[0]?.at;
  return at ? new Date(at).getTime() - now.getTime() : undefined;
}

export const claimExpiryLoop = defineLoop({
  name: 'claim-expiry',
  intervalMs: (ctx) => ctx.config.resolverIntervalMs,
  runOnce: expireClaims,
});
