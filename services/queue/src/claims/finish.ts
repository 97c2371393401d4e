// What every claim does once its runs are running, for claimWork batches and claimTask alike:
// the answer (status, definition, temporary credentials), the task-running messages, and the
// workers' recent tasks. One statement writes the messages and the worker rows for a whole batch
// (in a claimWork batch it travels with COMMIT).
import { sql, type RawBuilder } from 'kysely';
import type { Ctx } from '../context.js';
import { embedded, type Embedding } from '../db/batch-transaction.js';
import type { Trx } from '../db/database.js';
import { taskMessage, type OutboxMessage } from '../outbox/messages.js';
import { outboxWith } from '../outbox/write.js';
import { loadTask, toDefinition, toStatus } from '../tasks/status.js';
import type { Claim, Claimer } from './claim.js';
import { taskCredentials } from './credentials.js';
import type { Taken } from './take.js';

/**
 * Per claimer (same order), its claims, and the statement that writes the messages and recent
 * tasks of them all (none when nothing was claimed), its values embedded as `how` says.
 */
export function finishClaims(
  ctx: Ctx,
  batch: Array<{ who: Claimer; taken: Taken[] }>,
  takenUntil: Date,
  how: Embedding,
): { answers: Claim[][]; record?: RawBuilder<unknown> } {
  const until = takenUntil.toISOString();
  const messages: OutboxMessage[] = [];
  const answers = batch.map(({ who, taken }) =>
    taken.map(({ t, runId }): Claim => {
      const status = toStatus(t);
      messages.push(taskMessage('taskRunning', t, { runId, workerGroup: who.workerGroup, workerId: who.workerId, takenUntil: until }, status));
      return {
        status,
        runId,
        workerGroup: who.workerGroup,
        workerId: who.workerId,
        takenUntil: until,
        task: toDefinition(t.task),
        credentials: taskCredentials(ctx, {
          taskId: t.task.task_id, runId, workerGroup: who.workerGroup, workerId: who.workerId, takenUntil, scopes: t.task.scopes,
        }),
      };
    }),
  );
  return { answers, record: messages.length > 0 ? recordClaims(ctx, messages, batch, how) : undefined };
}

/** claimTask's path: one run of a task it has locked, read back after the run moved. */
export async function finishClaim(ctx: Ctx, trx: Trx, who: Claimer, taskId: string, runId: number, takenUntil: Date): Promise<Claim> {
  const t = (await loadTask(trx, taskId))!;
  const { answers, record } = finishClaims(ctx, [{ who, taken: [{ t, runId }] }], takenUntil, 'parameter');
  await record!.execute(trx);
  return answers[0]![0]!;
}

function recordClaims(ctx: Ctx, messages: OutboxMessage[], batch: Array<{ who: Claimer; taken: Taken[] }>, how: Embedding) {
  // One row per worker (ON CONFLICT DO UPDATE cannot touch a row twice in one statement): a
  // worker in several requests of the batch gets their claims in request order. Rows go in key
  // order, so two batches upserting the same workers lock them in the same order.
  const byWorker = new Map<string, { q: string; g: string; w: string; r: Array<{ taskId: string; runId: number }> }>();
  for (const { who, taken } of batch) {
    if (taken.length === 0) continue;
    const key = JSON.stringify([who.taskQueueId, who.workerGroup, who.workerId]);
    let row = byWorker.get(key);
    if (!row) byWorker.set(key, (row = { q: who.taskQueueId, g: who.workerGroup, w: who.workerId, r: [] }));
    for (const { t, runId } of taken) row.r.push({ taskId: t.task.task_id, runId });
  }
  const workers = [...byWorker.keys()].sort().map((k) => {
    const row = byWorker.get(k)!;
    // a first claim of more than 20 inserts without the trimming below
    return { ...row, r: row.r.slice(-20) };
  });
  const now = ctx.clock.now();
  const expires = new Date(now.getTime() + 24 * 3600 * 1000);
  // keep the last 20, newest last, as Taskcluster does
  return sql`
    WITH ${outboxWith(ctx.config.exchangePrefix, messages, how)}
    INSERT INTO workers (task_queue_id, worker_group, worker_id, recent_tasks, expires, first_claim, last_date_active)
    SELECT w->>'q', w->>'g', w->>'w', w->'r', ${embedded(expires, how)}::timestamptz, ${embedded(now, how)}::timestamptz,
      ${embedded(now, how)}::timestamptz
    FROM jsonb_array_elements(${embedded(JSON.stringify(workers), how)}::jsonb) AS w
    ON CONFLICT (task_queue_id, worker_group, worker_id) DO UPDATE SET
      recent_tasks = (
        SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb) FROM (
          SELECT e, n FROM jsonb_array_elements(workers.recent_tasks || EXCLUDED.recent_tasks) WITH ORDINALITY AS x(e, n)
          ORDER BY n DESC LIMIT 20) last),
      expires = greatest(workers.expires, EXCLUDED.expires),
      last_date_active = EXCLUDED.last_date_active`;
}
