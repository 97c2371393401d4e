// What every claim writes once its runs are running, for claimWork batches and claimTask alike:
// the task-running messages and the workers' recent tasks, written by the same statement that
// reads the claims back — so a claimWork batch is one statement, its own transaction, with no
// round trip between the claim and its messages. The messages are built in SQL for that
// (tasks/status-sql.ts, outbox/messages-sql.ts); test/status-sql.test.ts checks them against
// taskMessage. The answer (definition, temporary credentials) is built here from the rows read back.
import { exchanges } from '@conveyor/pulse';
import { sql, type RawBuilder } from 'kysely';
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import { template, type Slots } from '../db/template.js';
import { routesCcSql, routingKeySql, taskKeyValuesSql } from '../outbox/messages-sql.js';
import { outboxXidWith } from '../outbox/write.js';
import { columnsOf, definitionSql, runJsonSql, statusSql } from '../tasks/status-sql.js';
import type { TaskStatus } from '../tasks/status.js';
import type { Claim, Claimer } from './claim.js';
import { taskCredentials } from './credentials.js';

/** A claim as the claim statements read it back (claimAnswerColumns): the run, its worker, the task after the claim. */
export interface ClaimedRow {
  task_id: string;
  scopes: string[];
  claim_run_id: number;
  claim_worker_group: string;
  claim_worker_id: string;
  status: TaskStatus;
  definition: Record<string, unknown>;
}

/** The columns of the `claimed` CTE a claim statement reads back (ClaimedRow). */
export const claimAnswerColumns = sql`task_id, scopes, claim_run_id, claim_worker_group, claim_worker_id, status, definition`;

/**
 * The columns of the `claimed` CTE: the task's own and those ClaimedRow adds, for a FROM list
 * that holds the tasks row `t` and the claimed run's row `m` as it is after the claim (its other
 * runs are read from `runs`; a statement's snapshot does not see the row it just changed).
 */
export function claimedColumns(workerGroup: RawBuilder<unknown>, workerId: RawBuilder<unknown>, order: RawBuilder<unknown>) {
  return sql`t.*, m.run_id AS claim_run_id, ${workerGroup} AS claim_worker_group, ${workerId} AS claim_worker_id,
    ${order} AS claim_order, ${definitionSql('t')} AS definition,
    ${statusSql('t', sql`(SELECT json_agg(${runJsonSql('x')} ORDER BY x.run_id) FROM (
      SELECT o.* FROM runs o WHERE o.task_id = m.task_id AND o.run_id <> m.run_id UNION ALL SELECT m.*) x)`)} AS status`;
}

const running = exchanges.taskRunning;
const c = columnsOf('c');
const runningKey = routingKeySql(running, {
  ...taskKeyValuesSql('c'),
  runId: c('claim_run_id'),
  workerGroup: c('claim_worker_group'),
  workerId: c('claim_worker_id'),
});

/** The values of recordClaimsWith's statement. */
export interface ClaimRecordValues {
  prefix: string;
  /** takenUntil as the messages carry it */
  until: string;
  now: Date;
  /** of the workers' rows */
  expires: Date;
}

export function claimRecordValues(ctx: Ctx, takenUntil: Date): ClaimRecordValues {
  const now = ctx.clock.now();
  return { prefix: ctx.config.exchangePrefix, until: takenUntil.toISOString(), now, expires: new Date(now.getTime() + 24 * 3600 * 1000) };
}

/**
 * WITH entries that write, for every row of the CTE `claimed` (ClaimedRow's columns), its
 * task-running message and its worker's recent tasks (keeping the last 20, newest last, as
 * Taskcluster does). Nothing is written, and no transaction id taken, when `claimed` is empty.
 */
export function recordClaimsWith({ prefix, until, now, expires }: Slots<ClaimRecordValues>) {
  // The xid is taken before the first outbox id is drawn (the event stream's gap handling relies
  // on it: outbox/write.ts); the claim's own updates took it already, this keeps the rule explicit.
  return sql`
    ${outboxXidWith('claimed')},
    outbox_rows AS (
      INSERT INTO outbox (exchange, routing_key, cc, body)
      SELECT ${prefix}::text || ${running.name}, ${runningKey}, ${routesCcSql(c('routes'))},
        json_build_object('version', 1, 'status', c.status, 'runId', c.claim_run_id, 'workerGroup', c.claim_worker_group,
          'workerId', c.claim_worker_id, 'takenUntil', ${until}::text, 'task', json_build_object('tags', c.tags))
      FROM outbox_xid, claimed c
      -- outbox ids are drawn in this order (the relay publishes in id order)
      ORDER BY c.claim_order),
    worker_rows AS (
      -- One row per worker (ON CONFLICT DO UPDATE cannot touch a row twice in one statement), in
      -- key order, so two batches upserting the same workers lock them in the same order.
      INSERT INTO workers (task_queue_id, worker_group, worker_id, recent_tasks, expires, first_claim, last_date_active)
      SELECT q, g, w,
        (SELECT jsonb_agg(e ORDER BY n) FROM (
          SELECT e, n FROM jsonb_array_elements(mine.r) WITH ORDINALITY AS y (e, n) ORDER BY n DESC LIMIT 20) last),
        ${expires}::timestamptz, ${now}::timestamptz, ${now}::timestamptz
      FROM (
        SELECT c.task_queue_id AS q, c.claim_worker_group AS g, c.claim_worker_id AS w,
          jsonb_agg(jsonb_build_object('taskId', c.task_id, 'runId', c.claim_run_id) ORDER BY c.claim_order) AS r
        FROM claimed c GROUP BY 1, 2, 3) mine
      ORDER BY q, g, w
      ON CONFLICT (task_queue_id, worker_group, worker_id) DO UPDATE SET
        recent_tasks = (
          SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb) FROM (
            SELECT e, n FROM jsonb_array_elements(workers.recent_tasks || EXCLUDED.recent_tasks) WITH ORDINALITY AS x(e, n)
            ORDER BY n DESC LIMIT 20) last),
        expires = greatest(workers.expires, EXCLUDED.expires),
        last_date_active = EXCLUDED.last_date_active)`;
}

/** The answer to a claim read back by a claim statement. */
export function claimAnswer(ctx: Ctx, row: ClaimedRow, takenUntil: Date): Claim {
  const { claim_run_id: runId, claim_worker_group: workerGroup, claim_worker_id: workerId, status } = row;
  return {
    status,
    runId,
    workerGroup,
    workerId,
    takenUntil: takenUntil.toISOString(),
    task: row.definition,
    credentials: taskCredentials(ctx, { taskId: row.task_id, runId, workerGroup, workerId, takenUntil, scopes: row.scopes }),
  };
}

/** claimTask's path: one run of a task it has locked, read back after the run moved. */
export async function finishClaim(ctx: Ctx, trx: Trx, who: Claimer, taskId: string, runId: number, takenUntil: Date): Promise<Claim> {
  const { rows } = await trx.executeQuery(
    claimTaskStatement({ taskId, runId, workerGroup: who.workerGroup, workerId: who.workerId, ...claimRecordValues(ctx, takenUntil) }),
  );
  return claimAnswer(ctx, rows[0]!, takenUntil);
}

const claimTaskStatement = template<ClaimRecordValues & { taskId: string; runId: number; workerGroup: string; workerId: string }, ClaimedRow>(
  (v) => sql`
    WITH claimed AS MATERIALIZED (
      SELECT ${claimedColumns(sql`${v.workerGroup}::text`, sql`${v.workerId}::text`, sql`1`)}
      FROM tasks t JOIN runs m ON m.task_id = t.task_id
      WHERE t.task_id = ${v.taskId} AND m.run_id = ${v.runId}::int),
    ${recordClaimsWith(v)}
    SELECT ${claimAnswerColumns} FROM claimed`,
);
