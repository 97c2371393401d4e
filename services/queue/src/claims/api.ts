// claimWork (long-poll) and the deprecated claimTask.
import { sleep } from '@conveyor/pulse';
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { Db, Trx } from '../db/database.js';
import { endpoint } from '../http/endpoint.js';
import { ApiError } from '../http/errors.js';
import { assertBeforeDeadline, withLockedTask } from '../runs/with-task.js';
import { splitQueueId } from '../tasks/status.js';
import { claimPending, claimUntil, type Claim, type Claimer } from './claim.js';
import { finishClaim } from './finish.js';
import { markQueueSeen, markWorkerSeen } from './seen.js';
import type { Waiter } from './waiters.js';

// `db` is the caller's transaction when it has one: a second pool connection taken while holding
// the first deadlocks the pool once every connection is held that way.
async function isQuarantined(ctx: Ctx, db: Db | Trx, who: Claimer): Promise<boolean> {
  const row = await db
    .selectFrom('workers')
    .select('quarantine_until')
    .where('task_queue_id', '=', who.taskQueueId)
    .where('worker_group', '=', who.workerGroup)
    .where('worker_id', '=', who.workerId)
    .executeTakeFirst();
  return !!row?.quarantine_until && new Date(row.quarantine_until) > ctx.clock.now();
}

/**
 * Leaves the queue's waiters when a call ends. A notification wakes only one waiter
 * (claims/waiters.ts), so what this call owes the others is passed on: after a claim that got all
 * it asked for while more stayed pending, two more wakes; otherwise the wake it took and did not
 * act on (it came during the claim, or just before the client left), which may be about a task
 * the claim did not see.
 */
function leave(ctx: Ctx, taskQueueId: string, waiter: Waiter, fanOut: boolean, tookWake = false): void {
  waiter.cancel();
  const owed = fanOut ? 2 : waiter.woken || tookWake ? 1 : 0;
  if (owed > 0) ctx.waiters.wake(taskQueueId, owed);
}

/** Claims up to `count`, waiting up to the long-poll timeout for the first one. */
async function claimWork(ctx: Ctx, who: Claimer, count: number, clientGone: () => AbortSignal): Promise<Claim[]> {
  const deadline = Date.now() + ctx.config.claimWorkTimeoutSec * 1000;
  markQueueSeen(ctx, who.taskQueueId);
  markWorkerSeen(ctx, who);
  // made only once the call has to wait: under load most calls find work at once
  let signal: AbortSignal | undefined;
  // whether the last wait ended with a wake (the claim after it acted on it, unless quarantined)
  let tookWake = false;
  let quarantined: boolean | undefined;
  for (;;) {
    const waiter = ctx.waiters.register(who.taskQueueId);
    let left: number;
    try {
      const { claims, morePending } = await claimPending(ctx, who, count);
      if (claims.length > 0) {
        leave(ctx, who.taskQueueId, waiter, claims.length === count && morePending);
        return claims;
      }
      left = deadline - Date.now();
      signal ??= AbortSignal.any([clientGone(), ctx.draining]);
      if (left <= 0 || signal.aborted) {
        leave(ctx, who.taskQueueId, waiter, false);
        return [];
      }
      // The claim statement gives a quarantined worker nothing; as a waiter it would take wakes
      // meant for others. It waits out the poll outside the line, told nothing, as Taskcluster's
      // does. Looked up once per call, when it first has to wait (a key lookup, and only when the
      // queue is empty; the waiters a fan-out wakes for nothing would otherwise pay it each time).
      // A worker quarantined while it waits leaves the line when this call ends; a wake it takes
      // meanwhile waits for another waiter's fallback poll (at most 5 s).
      quarantined ??= await isQuarantined(ctx, ctx.db, who);
    } catch (err) {
      leave(ctx, who.taskQueueId, waiter, false, tookWake);
      throw err;
    }
    if (quarantined) {
      leave(ctx, who.taskQueueId, waiter, false, tookWake);
      await sleep(deadline - Date.now(), signal);
      return [];
    }
    // A poll every few seconds covers a lost LISTEN connection; NOTIFY normally wakes us first.
    await waiter.wait(Math.min(left, 5000), signal);
    tookWake = waiter.woken;
    if (signal.aborted) {
      leave(ctx, who.taskQueueId, waiter, false);
      return [];
    }
  }
}

export const claimEndpoints = [
  endpoint({
    name: 'claimWork', method: 'POST', route: '/claim-work/<taskQueueId>', wildcard: 'taskQueueId',
    input: 'v1/claim-work-request.json', output: 'v1/claim-work-response.json',
    scopes: { AllOf: ['queue:claim-work:<taskQueueId>', 'queue:worker-id:<workerGroup>/<workerId>'] },
    stability: 'stable', category: 'Worker Interface', title: 'Claim Work',
    description: 'Claim pending tasks of a task queue, highest priority first, then oldest. Waits up to CLAIM_WORK_TIMEOUT seconds for the first.',
    handler: async (req) => {
      const { workerGroup, workerId, tasks } = req.body as { workerGroup: string; workerId: string; tasks: number };
      req.authorize({ workerGroup, workerId });
      const clientGone = () => {
        const closed = new AbortController();
        // 'close' also fires after every answered request; aborting then would only cost a
        // DOMException (with its stack) per claimWork on the hot path
        const gone = () => {
          if (!req.reply.raw.writableFinished) closed.abort();
        };
        // asked for only when the call starts to wait, by which time the client may have left
        if (req.raw.raw.socket?.destroyed) closed.abort();
        req.raw.raw.once('close', gone);
        req.reply.raw.once('close', gone);
        return closed.signal;
      };
      const claims = await claimWork(req.ctx, { taskQueueId: req.params.taskQueueId, workerGroup, workerId }, tasks, clientGone);
      return { tasks: claims };
    },
  }),
  endpoint({
    name: 'claimTask', method: 'POST', route: '/task/<taskId>/runs/<runId>/claim',
    input: 'v1/task-claim-request.json', output: 'v1/task-claim-response.json',
    scopes: { AllOf: ['queue:claim-task:<provisionerId>/<workerType>', 'queue:worker-id:<workerGroup>/<workerId>'] },
    stability: 'deprecated', category: 'Worker Interface', title: 'Claim Task',
    description: 'Claim one specific pending run (deprecated: use claimWork).',
    handler: async (req) => {
      const { ctx } = req;
      const { taskId } = req.params;
      const runId = Number(req.params.runId);
      const { workerGroup, workerId } = req.body as { workerGroup: string; workerId: string };
      return withLockedTask(ctx, taskId, async (trx, t) => {
        req.authorize({ ...splitQueueId(t.task.task_queue_id), workerGroup, workerId });
        const run = t.runs[runId];
        if (!run) throw new ApiError('ResourceNotFound', `Run ${runId} of task ${taskId} not found`);
        assertBeforeDeadline(ctx, t);
        const who = { taskQueueId: t.task.task_queue_id, workerGroup, workerId };
        if (await isQuarantined(ctx, trx, who)) return {};
        if (run.state === 'running' && run.worker_group === workerGroup && run.worker_id === workerId) {
          // the same worker asking again (a retried request): hand it the same claim
          return finishClaim(ctx, trx, who, taskId, runId, new Date(run.taken_until!));
        }
        if (run.state !== 'pending' || runId !== t.runs.length - 1) {
          throw new ApiError('RequestConflict', `Run ${runId} of task ${taskId} is ${run.state}, not pending; it cannot be claimed`);
        }
        const takenUntil = claimUntil(ctx);
        const now = ctx.clock.now();
        await trx.deleteFrom('pending').where('task_id', '=', taskId).where('run_id', '=', runId).execute();
        const moved = await sql`UPDATE runs SET state = 'running', worker_group = ${workerGroup}, worker_id = ${workerId},
          taken_until = ${takenUntil}, started = ${now} WHERE task_id = ${taskId} AND run_id = ${runId} AND state = 'pending'`.execute(trx);
        // lockTask makes this impossible; should it ever happen, roll back rather than hand the run out twice
        if (moved.numAffectedRows !== 1n) throw new Error(`run ${taskId}/${runId} left state pending under the task lock`);
        return finishClaim(ctx, trx, who, taskId, runId, takenUntil);
      });
    },
  }),
];
