// Built-in task queues for demos and smoke tests: tasks on `built-in/succeed` complete and tasks on
// `built-in/fail` fail, with no worker anywhere. The service acts as a worker inside the queue
// process: it claims through the normal claim path (task-running, worker records) and resolves in
// a second transaction (task-completed / task-failed, group and dependents), so listeners see the
// same events as for any worker. A crash between the two leaves a running run that claim expiry
// hands back, and it is claimed again here.
import type { Ctx } from '../context.js';
import { claimPending, type Claimer } from '../claims/claim.js';
import { resolveRun } from '../runs/resolve.js';
import { withLockedTask } from '../runs/with-task.js';
import type { Service } from '../services.js';

export const builtinQueues = {
  'built-in/succeed': { state: 'completed', reason: 'completed' },
  'built-in/fail': { state: 'failed', reason: 'failed' },
} as const;

export type BuiltinQueue = keyof typeof builtinQueues;

const batchSize = 100;

/** Claims and resolves what is pending on one built-in queue; returns how many it resolved. */
export async function resolveBuiltin(ctx: Ctx, taskQueueId: BuiltinQueue): Promise<{ handled: number; full: boolean }> {
  const outcome = builtinQueues[taskQueueId];
  const who: Claimer = { taskQueueId, workerGroup: 'built-in', workerId: taskQueueId.slice('built-in/'.length) };
  const { claims } = await claimPending(ctx, who, batchSize);
  let handled = 0;
  for (const c of claims) {
    const taskId = c.status.taskId;
    await withLockedTask(ctx, taskId, async (trx, t, emit) => {
      const run = t.runs[c.runId];
      // cancelled or past its deadline in between: the queue's resolution stands
      if (!run || run.state !== 'running' || c.runId !== t.runs.length - 1) return;
      const r = await resolveRun(ctx, trx, t, c.runId, { state: outcome.state, reason: outcome.reason });
      emit(...r.messages);
      handled += 1;
    });
  }
  return { handled, full: claims.length === batchSize };
}

/**
 * One runner per built-in queue. It registers for the queue's pending NOTIFY before it looks at
 * the table, as claimWork does, so a task made pending while it works is never missed; the
 * interval is only the fallback for a lost LISTEN connection.
 */
export async function startBuiltinQueues(ctx: Ctx): Promise<Service> {
  const stop = new AbortController();
  const run = async (taskQueueId: BuiltinQueue) => {
    let failures = 0;
    while (!stop.signal.aborted) {
      const waiter = ctx.waiters.register(taskQueueId);
      let full = false;
      try {
        full = (await resolveBuiltin(ctx, taskQueueId)).full;
        failures = 0;
      } catch (err) {
        failures += 1;
        ctx.log.error({ err, taskQueueId, failures }, 'built-in queue failed; retrying');
      }
      // wait() does not see an abort that happened before it was called
      if ((full && failures === 0) || stop.signal.aborted) {
        waiter.cancel();
        continue;
      }
      const wait = failures > 0 ? Math.min(30_000, ctx.config.resolverIntervalMs * 2 ** failures) : ctx.config.resolverIntervalMs * 5;
      await waiter.wait(wait, stop.signal);
      waiter.cancel();
    }
  };
  const runners = (Object.keys(builtinQueues) as BuiltinQueue[]).map(run);
  return {
    name: 'built-in-queues',
    async stop() {
      stop.abort();
      await Promise.all(runners);
    },
  };
}
