// tasks.ever_resolved is gone. It was written at each task's first resolution and read by nothing:
// whether a task is resolved is its last run's state (derived, not stored twice), and the group
// counters follow the state changes themselves. Writing it updated the whole, wide task row on
// every first resolution (a new version of the row with its payload, and its index entries when
// the page had no room): the largest write of a report that the state did not need.
// Never changes once released.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE tasks DROP COLUMN ever_resolved`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE tasks ADD COLUMN ever_resolved boolean NOT NULL DEFAULT false`.execute(db);
}
