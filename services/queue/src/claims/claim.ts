// Claiming: pending runs of a task queue → running, in one transaction, priority first then FIFO.
// Locks pending rows with SKIP LOCKED (concurrent claimers take different rows), then moves each
// run with its precondition in the WHERE clause; no task-row lock, see runs/README.md.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import { taskMessage } from '../outbox/messages.js';
import { writeOutbox } from '../outbox/write.js';
import { loadTasks, toDefinition, toStatus, type TaskStatus } from '../tasks/status.js';
import { taskCredentials } from './credentials.js';

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

export async function claimPending(ctx: Ctx, who: Claimer, count: number): Promise<Claim[]> {
  return ctx.db.transaction().execute(async (trx) => {
    const now = ctx.clock.now();
    const takenUntil = claimUntil(ctx);
    // A task past its deadline keeps its pending row (every pending run has one) until the
    // deadline resolver takes both away; claimers step over it.
    const claimed = await sql<{ task_id: string; run_id: number }>`
      WITH picked AS (
        SELECT p.task_id, p.run_id, p.priority, p.seq FROM pending p JOIN tasks t ON t.task_id = p.task_id
        WHERE p.task_queue_id = ${who.taskQueueId} AND t.deadline > ${now}
          -- a quarantined worker gets nothing
          AND NOT EXISTS (
            SELECT 1 FROM workers w
            WHERE w.task_queue_id = ${who.taskQueueId} AND w.worker_group = ${who.workerGroup}
              AND w.worker_id = ${who.workerId} AND w.quarantine_until > ${now})
        ORDER BY p.priority DESC, p.seq
        LIMIT ${count}
        FOR UPDATE OF p SKIP LOCKED
      ), taken AS (
        DELETE FROM pending d USING picked
        WHERE d.task_id = picked.task_id AND d.run_id = picked.run_id
        RETURNING d.task_id, d.run_id
      ), moved AS (
        UPDATE runs r
        SET state = 'running', worker_group = ${who.workerGroup}, worker_id = ${who.workerId},
            taken_until = ${takenUntil}, started = ${now}
        FROM taken
        WHERE r.task_id = taken.task_id AND r.run_id = taken.run_id AND r.state = 'pending'
        RETURNING r.task_id, r.run_id
      )
      -- the worker gets its batch in claim order too: priority, then FIFO
      SELECT moved.task_id, moved.run_id FROM moved JOIN picked USING (task_id, run_id)
      ORDER BY picked.priority DESC, picked.seq`.execute(trx);
    if (claimed.rows.length === 0) return [];
    return finishClaims(ctx, trx, who, claimed.rows, takenUntil);
  });
}

/** Reads the claimed tasks back, writes task-running messages and the worker's recent tasks. */
export async function finishClaims(
  ctx: Ctx,
  trx: Trx,
  who: Claimer,
  rows: Array<{ task_id: string; run_id: number }>,
  takenUntil: Date,
): Promise<Claim[]> {
  const byId = new Map((await loadTasks(trx, rows.map((r) => r.task_id))).map((t) => [t.task.task_id, t]));
  const claims: Claim[] = [];
  const messages = [];
  for (const { task_id, run_id } of rows) {
    const t = byId.get(task_id)!;
    const until = takenUntil.toISOString();
    messages.push(taskMessage('taskRunning', t, { runId: run_id, workerGroup: who.workerGroup, workerId: who.workerId, takenUntil: until }));
    claims.push({
      status: toStatus(t),
      runId: run_id,
      workerGroup: who.workerGroup,
      workerId: who.workerId,
      takenUntil: until,
      task: toDefinition(t.task),
      credentials: taskCredentials(ctx, {
        taskId: task_id, runId: run_id, workerGroup: who.workerGroup, workerId: who.workerId, takenUntil, scopes: t.task.scopes,
      }),
    });
  }
  await writeOutbox(trx, ctx.config.exchangePrefix, messages);
  await recordRecentTasks(ctx, trx, who, rows);
  return claims;
}

async function recordRecentTasks(ctx: Ctx, trx: Trx, who: Claimer, rows: Array<{ task_id: string; run_id: number }>) {
  const now = ctx.clock.now();
  // a first claim of more than 20 inserts without the trimming below
  const recent = JSON.stringify(rows.slice(-20).map((r) => ({ taskId: r.task_id, runId: r.run_id })));
  const expires = new Date(now.getTime() + 24 * 3600 * 1000);
  // keep the last 20, newest last, as Taskcluster does
  await sql`
    INSERT INTO workers (task_queue_id, worker_group, worker_id, recent_tasks, expires, first_claim, last_date_active)
    VALUES (${who.taskQueueId}, ${who.workerGroup}, ${who.workerId}, ${recent}::jsonb, ${expires}, ${now}, ${now})
    ON CONFLICT (task_queue_id, worker_group, worker_id) DO UPDATE SET
      recent_tasks = (
        SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb) FROM (
          SELECT e, n FROM jsonb_array_elements(workers.recent_tasks || EXCLUDED.recent_tasks) WITH ORDINALITY AS x(e, n)
          ORDER BY n DESC LIMIT 20) last),
      expires = greatest(workers.expires, EXCLUDED.expires),
      last_date_active = EXCLUDED.last_date_active`.execute(trx);
}
