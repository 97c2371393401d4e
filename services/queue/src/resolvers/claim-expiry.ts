// Claim expiry: a running run whose takenUntil passed without a reclaim becomes
// exception/claim-expired, with a `retry` run while retries remain (task-exception, then
// task-pending). The worker's late report then meets a run that is no longer running: 409.
// A task past its deadline is left to the deadline loop (deadline-exceeded, no retry), as in
// Taskcluster.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import { defineLoop, type LoopResult } from '../loops/loop.js';
import { resolveRun } from '../runs/resolve.js';
import { resolveDue } from './due.js';

const batchSize = 100;

export async function expireClaims(ctx: Ctx): Promise<LoopResult> {
  const now = ctx.clock.now();
  // runs_taken_until covers only running runs
  const due = await sql<{ task_id: string; run_id: number }>`
    SELECT r.task_id, r.run_id FROM runs r JOIN tasks t ON t.task_id = r.task_id
    WHERE r.state = 'running' AND r.taken_until <= ${now} AND t.deadline > ${now}
    ORDER BY r.taken_until LIMIT ${batchSize}`.execute(ctx.db);
  return resolveDue(ctx, {
    loop: 'claim-expiry',
    items: due.rows,
    batchSize,
    taskId: (r) => r.task_id,
    async resolve(trx, t, { run_id }) {
      const run = t.runs[run_id];
      const at = ctx.clock.now();
      // reclaimed, resolved or past its deadline since we looked: nothing to do
      if (!run || run_id !== t.runs.length - 1 || run.state !== 'running' || !run.taken_until || new Date(run.taken_until) > at) return [];
      if (new Date(t.task.deadline) <= at) return [];
      return (await resolveRun(ctx, trx, t, run_id, { state: 'exception', reason: 'claim-expired', retry: 'retry' })).messages;
    },
    nextDueMs: () => msUntilNext(ctx),
  });
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
