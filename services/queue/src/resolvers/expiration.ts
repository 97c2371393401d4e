// Expiration: deletes tasks (with runs, pending and deadline rows), dependency edges, groups,
// resolved pipelines whose groups are gone, workers, task queues and published outbox rows past
// their `expires` plus a grace period (EXPIRATION_GRACE_SEC), in
// batches of bounded size, each its own statement. Artifacts have their own loop
// (artifacts/expire.ts): they may not outlive their task, so they are gone first.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import { defineLoop, type LoopResult } from '../loops/loop.js';
import { relayLockKey } from '../outbox/relay.js';

interface ExpirationStep {
  name: string;
  /** Deletes up to `limit` items expired before `cutoff`; returns how many it deleted. */
  run(ctx: Ctx, cutoff: Date, limit: number): Promise<number>;
}

const batchSize = 1000;

/**
 * Tasks go with their runs and deadline rows (ON DELETE CASCADE) and their pending rows. Only
 * tasks the deadline loop is done with: a task always reaches a resolved state first, so no
 * group's count of unresolved tasks is left wrong.
 */
const tasks: ExpirationStep = {
  name: 'tasks',
  async run(ctx, cutoff, limit) {
    const r = await sql<{ task_id: string }>`
      WITH doomed AS (
        SELECT task_id FROM tasks t
        WHERE expires < ${cutoff} AND NOT EXISTS (SELECT 1 FROM task_deadlines d WHERE d.task_id = t.task_id)
        ORDER BY expires LIMIT ${limit}
        FOR UPDATE SKIP LOCKED),
      gone_pending AS (DELETE FROM pending WHERE task_id IN (SELECT task_id FROM doomed))
      DELETE FROM tasks WHERE task_id IN (SELECT task_id FROM doomed) RETURNING task_id`.execute(ctx.db);
    return r.rows.length;
  },
};

/** An edge expires with its dependent task. */
const dependencies: ExpirationStep = {
  name: 'task-dependencies',
  async run(ctx, cutoff, limit) {
    const r = await sql`
      DELETE FROM task_dependencies WHERE (required_task_id, dependent_task_id) IN (
        SELECT required_task_id, dependent_task_id FROM task_dependencies
        WHERE expires < ${cutoff} LIMIT ${limit} FOR UPDATE SKIP LOCKED)`.execute(ctx.db);
    return Number(r.numAffectedRows ?? 0);
  },
};

/**
 * A group expires with its last task (createTask raises its expires); deleting it frees the
 * taskGroupId and its schedulerId. One whose tasks are still there (say, waiting for the deadline
 * loop) stays until they are gone.
 */
const groups: ExpirationStep = {
  name: 'task-groups',
  async run(ctx, cutoff, limit) {
    const r = await sql`
      DELETE FROM task_groups WHERE task_group_id IN (
        SELECT task_group_id FROM task_groups g
        WHERE expires < ${cutoff} AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.task_group_id = g.task_group_id)
        LIMIT ${limit} FOR UPDATE SKIP LOCKED)`.execute(ctx.db);
    return Number(r.numAffectedRows ?? 0);
  },
};

/**
 * Published outbox rows are kept OUTBOX_RETENTION_SEC for event-stream replay. The relay publishes
 * in id order, so the oldest rows are at the head of the primary key: look at the head only, never
 * scan the table.
 */
const outbox: ExpirationStep = {
  name: 'outbox',
  async run(ctx, _cutoff, limit) {
    const before = new Date(ctx.clock.now().getTime() - ctx.config.outboxRetentionSec * 1000);
    const r = await sql`
      DELETE FROM outbox WHERE id IN (
        SELECT id FROM (SELECT id, published FROM outbox ORDER BY id LIMIT ${limit}) head
        WHERE published < ${before})`.execute(ctx.db);
    return Number(r.numAffectedRows ?? 0);
  },
};

/**
 * A worker is listed until its expires (a day past its last claim) or, when later, the end of its
 * quarantine: a quarantined worker stays visible so it can be let out again. Past both plus the
 * grace it is forgotten. The table holds one row per worker ever seen, so a scan is cheap.
 */
const workers: ExpirationStep = {
  name: 'workers',
  async run(ctx, cutoff, limit) {
    const r = await sql`
      DELETE FROM workers WHERE (task_queue_id, worker_group, worker_id) IN (
        SELECT task_queue_id, worker_group, worker_id FROM workers
        WHERE expires < ${cutoff} AND (quarantine_until IS NULL OR quarantine_until < ${cutoff})
        LIMIT ${limit} FOR UPDATE SKIP LOCKED)`.execute(ctx.db);
    return Number(r.numAffectedRows ?? 0);
  },
};

/** A task queue is listed until a day past the last claimWork on it; then, after the grace, it goes. */
const taskQueues: ExpirationStep = {
  name: 'task-queues',
  async run(ctx, cutoff, limit) {
    const r = await sql`
      DELETE FROM task_queues WHERE task_queue_id IN (
        SELECT task_queue_id FROM task_queues WHERE expires < ${cutoff} LIMIT ${limit} FOR UPDATE SKIP LOCKED)`.execute(ctx.db);
    return Number(r.numAffectedRows ?? 0);
  },
};

/**
 * Without a broker (AMQP_URL unset) nothing marks rows published, and the outbox would only grow.
 * Its rows then serve the event stream alone, so they are kept OUTBOX_RETENTION_SEC from their
 * creation like published ones. Unless a relay runs against this database from another process
 * (it holds the relay's advisory lock): its rows are not ours to drop.
 */
const unbrokeredOutbox: ExpirationStep = {
  name: 'outbox-unbrokered',
  async run(ctx, _cutoff, limit) {
    if (ctx.config.amqpUrl) return 0;
    const before = new Date(ctx.clock.now().getTime() - ctx.config.outboxRetentionSec * 1000);
    // a bigint advisory key shows in pg_locks as its high and low 32 bits
    const high = Math.floor(relayLockKey / 2 ** 32);
    const low = relayLockKey % 2 ** 32;
    const r = await sql`
      DELETE FROM outbox WHERE id IN (
        SELECT id FROM (SELECT id, created FROM outbox ORDER BY id LIMIT ${limit}) head
        WHERE created < ${before}
          AND NOT EXISTS (
            SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid = ${high}::bigint::oid AND objid = ${low}::bigint::oid AND objsubid = 1 AND granted))`.execute(ctx.db);
    return Number(r.numAffectedRows ?? 0);
  },
};

/**
 * A resolved pipeline (the scheduler's) lives as long as its work: once the task groups of all its
 * stages have expired and gone, and it resolved before the cutoff, it goes with its stages (ON
 * DELETE CASCADE). Running pipelines stay whatever their age. Oldest resolutions first.
 */
const pipelines: ExpirationStep = {
  name: 'pipelines',
  async run(ctx, cutoff, limit) {
    const r = await sql`
      DELETE FROM scheduler_pipelines WHERE pipeline_id IN (
        SELECT pipeline_id FROM scheduler_pipelines p
        WHERE p.resolved IS NOT NULL AND p.resolved < ${cutoff}
          AND NOT EXISTS (
            SELECT 1 FROM scheduler_stages s JOIN task_groups g USING (task_group_id) WHERE s.pipeline_id = p.pipeline_id)
        ORDER BY p.resolved LIMIT ${limit} FOR UPDATE SKIP LOCKED)`.execute(ctx.db);
    return Number(r.numAffectedRows ?? 0);
  },
};

// groups before pipelines: a pipeline goes in the same pass as its last group
const steps = [tasks, dependencies, groups, pipelines, workers, taskQueues, outbox, unbrokeredOutbox];

export async function expireAll(ctx: Ctx): Promise<LoopResult & { deleted: Record<string, number> }> {
  const cutoff = new Date(ctx.clock.now().getTime() - ctx.config.expirationGraceSec * 1000);
  const deleted: Record<string, number> = {};
  let full = false;
  for (const step of steps) {
    const n = await step.run(ctx, cutoff, batchSize);
    deleted[step.name] = n;
    if (n >= batchSize) full = true;
  }
  return { handled: Object.values(deleted).reduce((a, b) => a + b, 0), full, deleted };
}

export const expirationLoop = defineLoop({
  name: 'expiration',
  intervalMs: (ctx) => ctx.config.expirationIntervalMs,
  runOnce: expireAll,
});
