// listPendingTasks pages through a queue's pending runs in insertion order, keyset on
// (inserted, task_id). Without this index every page sorts the queue's whole backlog:
// bench/task-queue-views measured a page of 100 from a 100k-run queue at ~150 ms p50 without it
// and ~12 ms with it (an index-only scan). Its cost on the hot path (one more index entry per
// pending insert and delete) was below the noise of that run; see bench/README.md.
// Migrations never import application code and never change once released.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX pending_list ON pending (task_queue_id, inserted, task_id)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX pending_list`.execute(db);
}
