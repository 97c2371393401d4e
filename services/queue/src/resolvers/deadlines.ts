// Deadlines: at its deadline an unresolved task becomes exception/deadline-exceeded with no retry —
// a synthetic run if it was unscheduled, otherwise its pending or running run. The task is then
// immutable (the endpoints check the deadline: 409), so its task_deadlines row is done with and
// goes, in the same transaction. Taskcluster waits a further 60 s to 10 min; we resolve at the
// deadline itself.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import { defineLoop, type LoopResult } from '../loops/loop.js';
import type { OutboxMessage } from '../outbox/messages.js';
import { resolveRun, resolveUnscheduled } from '../runs/resolve.js';
import { taskState } from '../tasks/status.js';
import { resolveDue } from './due.js';

const batchSize = 100;

export async function resolveDeadlines(ctx: Ctx): Promise<LoopResult> {
  const now = ctx.clock.now();
  const due = await sql<{ task_id: string }>`
    SELECT task_id FROM task_deadlines WHERE deadline <= ${now} ORDER BY deadline LIMIT ${batchSize}`.execute(ctx.db);
  return resolveDue(ctx, {
    loop: 'deadlines',
    items: due.rows,
    batchSize,
    taskId: (r) => r.task_id,
    async resolve(trx, t) {
      if (new Date(t.task.deadline) > ctx.clock.now()) return [];
      const state = taskState(t.runs);
      let messages: OutboxMessage[] = [];
      if (state === 'unscheduled') {
        messages = await resolveUnscheduled(ctx, trx, t, 'deadline-exceeded');
      } else if (state === 'pending' || state === 'running') {
        messages = (await resolveRun(ctx, trx, t, t.runs.length - 1, { state: 'exception', reason: 'deadline-exceeded' })).messages;
      }
      await trx.deleteFrom('task_deadlines').where('task_id', '=', t.task.task_id).execute();
      return messages;
    },
    nextDueMs: () => msUntilNext(ctx),
  });
}

async function msUntilNext(ctx: Ctx): Promise<number | undefined> {
  const next = await sql<{ at: Date | null }>`SELECT min(deadline) AS at FROM task_deadlines`.execute(ctx.db);
  const at = next.rows[0]?.at;
  // never 0: a row due but not taken (just created) is picked up a moment later, not in a spin
  return at ? Math.max(10, new Date(at).getTime() - ctx.clock.now().getTime()) : undefined;
}

export const deadlineLoop = defineLoop({
  name: 'deadlines',
  intervalMs: (ctx) => ctx.config.resolverIntervalMs,
  runOnce: resolveDeadlines,
});
