// The claim statement for a batch of claim requests: pending runs → running, their task-running
// messages and the workers' recent tasks written, and the claims read back — one statement, its
// own transaction, however many requests, queues and workers the batch holds.
//
// Two requests on one queue must never get the same run. SKIP LOCKED does not skip rows this
// transaction has locked itself, so a pick per request would let both pick the same rows. Instead
// the requests are added up per queue (one pick of sum(counts) per queue, priority then FIFO), and
// the picked runs are dealt out in order: the earliest request of the queue gets the best n1 of
// them, the next the following n2, and so on, so a request for n tasks never gets more than n.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { Claimer } from './claim.js';
import { template } from '../db/template.js';
import { claimAnswerColumns, claimedColumns, claimRecordValues, recordClaimsWith, type ClaimRecordValues, type ClaimedRow } from './finish.js';

export interface ClaimRequest {
  who: Claimer;
  count: number;
}

export interface Taken {
  /** The claims the request got, priority then FIFO. */
  rows: ClaimedRow[];
  /**
   * Whether its queue had pending runs beyond what this statement took (claimWork wakes more
   * waiters then: claims/waiters.ts). Only known for a request that got something.
   */
  morePending: boolean;
}

/** Per request (same order), what it took. */
export async function takePending(ctx: Ctx, requests: ClaimRequest[], takenUntil: Date): Promise<Taken[]> {
  const asked = JSON.stringify(
    requests.map((r, i) => ({ i, q: r.who.taskQueueId, g: r.who.workerGroup, w: r.who.workerId, n: r.count })),
  );
  const { rows } = await ctx.batchDb.executeQuery(claimStatement({ asked, takenUntil, ...claimRecordValues(ctx, takenUntil) }));
  const taken: Taken[] = requests.map(() => ({ rows: [], morePending: false }));
  for (const { claim_request, more_pending, ...row } of rows) {
    const t = taken[claim_request]!;
    t.rows.push(row);
    t.morePending = more_pending;
  }
  return taken;
}

// - a quarantined worker's request takes no tasks, so it holds back nothing meant for others;
// - a task past its deadline keeps its pending row (every pending run has one) until the
//   deadline resolver takes both away; the pick steps over it;
// - the run moves only if it is still pending (a stale pending row is dropped, as before);
// - the status is built from the task's other runs plus the row just written: the statement's
//   snapshot still shows the claimed run as pending;
// - the CTEs that write (the messages, the worker rows) run whether or not anything reads them;
// - each claim says whether its queue kept pending runs past this statement's picks, as the
//   statement's snapshot shows them (runs other claims hold locked, or past their deadline, count
//   too: a wake too many is harmless; runs committed later send their own NOTIFY).
// The planner cannot know how many requests and picks there are (a parameter, a LIMIT per
// queue); guessing high, it would hash-join whole tables. So every step that reaches a big
// table is one it must serve from an index: a scalar subquery per request for the quarantine
// check, and `= ANY (ARRAY(...))` on the key for pending, runs and tasks.
const claimStatement = template<ClaimRecordValues & { asked: string; takenUntil: Date }, ClaimedRow & { claim_request: number; more_pending: boolean }>((v) => sql`
    WITH request AS (
      -- request i takes its queue's picks before+1 .. before+n
      SELECT r.*, sum(r.n) OVER (PARTITION BY r.q ORDER BY r.i) - r.n AS before
      FROM json_to_recordset(${v.asked}::json) AS r (i int, q text, g text, w text, n int)
      WHERE NOT coalesce((
        SELECT w.quarantine_until > ${v.now} FROM workers w
        WHERE w.task_queue_id = r.q AND w.worker_group = r.g AND w.worker_id = r.w), false)
    ), wanted AS (
      SELECT q, sum(n) AS n FROM request GROUP BY q
    ), picked AS MATERIALIZED (
      SELECT x.*, row_number() OVER (PARTITION BY x.task_queue_id ORDER BY x.priority DESC, x.seq) AS k
      FROM wanted, LATERAL (
        SELECT p.task_queue_id, p.task_id, p.run_id, p.priority, p.seq FROM pending p JOIN tasks t ON t.task_id = p.task_id
        WHERE p.task_queue_id = wanted.q AND t.deadline > ${v.now}
        ORDER BY p.priority DESC, p.seq
        LIMIT wanted.n
        FOR UPDATE OF p SKIP LOCKED) x
    ), dealt AS MATERIALIZED (
      SELECT p.task_id, p.run_id, p.priority, p.seq, r.i, r.g, r.w
      FROM picked p JOIN request r ON r.q = p.task_queue_id AND p.k > r.before AND p.k <= r.before + r.n
    ), taken AS (
      DELETE FROM pending d USING dealt
      WHERE d.task_id = ANY (ARRAY(SELECT task_id FROM dealt)) AND d.task_id = dealt.task_id AND d.run_id = dealt.run_id
      RETURNING d.task_id, d.run_id
    ), moved AS (
      UPDATE runs r
      SET state = 'running', worker_group = dealt.g, worker_id = dealt.w, taken_until = ${v.takenUntil}, started = ${v.now}
      FROM taken JOIN dealt ON dealt.task_id = taken.task_id AND dealt.run_id = taken.run_id
      WHERE r.task_id = ANY (ARRAY(SELECT task_id FROM taken)) AND r.task_id = taken.task_id AND r.run_id = taken.run_id
        AND r.state = 'pending'
      RETURNING r.*
    ), claimed AS MATERIALIZED (
      SELECT dealt.i AS claim_request, ${claimedColumns(sql`dealt.g`, sql`dealt.w`,
        // each worker gets its batch in claim order too: priority, then FIFO
        sql`row_number() OVER (ORDER BY dealt.i, dealt.priority DESC, dealt.seq)`)}
      FROM moved m
      JOIN dealt ON dealt.task_id = m.task_id AND dealt.run_id = m.run_id
      JOIN tasks t ON t.task_id = m.task_id AND t.task_id = ANY (ARRAY(SELECT task_id FROM moved))
    ), rest AS MATERIALIZED (
      SELECT wanted.q, EXISTS (
        SELECT FROM pending p
        WHERE p.task_queue_id = wanted.q AND p.task_id <> ALL (ARRAY(SELECT task_id FROM picked WHERE picked.task_queue_id = wanted.q))
      ) AS more_pending
      FROM wanted
    ), ${recordClaimsWith(v)}
    SELECT claim_request, ${claimAnswerColumns}, rest.more_pending
    FROM claimed JOIN request ON request.i = claimed.claim_request JOIN rest ON rest.q = request.q
    ORDER BY claim_order`);
