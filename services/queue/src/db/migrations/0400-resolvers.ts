// Work table for resolving a task's dependents past the first batch, and indexes the expiration loop
// scans. Migrations never import application code and never change once released.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- A resolved task whose dependents are not all handled yet: the resolving transaction handles the
    -- first batch itself and leaves a row here; the dependency loop continues after after_dependent,
    -- one bounded batch per transaction (rows are taken FOR UPDATE SKIP LOCKED).
    CREATE TABLE resolved_tasks_queue (
      id               bigserial PRIMARY KEY,
      task_id          text NOT NULL,
      -- resolved as completed: satisfies all-completed edges as well as all-resolved ones
      completed        boolean NOT NULL,
      after_dependent  text NOT NULL DEFAULT '',
      created          timestamptz NOT NULL DEFAULT now()
    );

    CREATE INDEX task_dependencies_expires ON task_dependencies (expires);
    CREATE INDEX task_groups_expires ON task_groups (expires);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP INDEX task_groups_expires, task_dependencies_expires;
    DROP TABLE resolved_tasks_queue;
  `.execute(db);
}
