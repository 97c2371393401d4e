// The scheduler's progress: each pipeline, and each stage it has started. A stage row is written
// (with the `created` its tasks carry) before any of its tasks is submitted, so a scheduler that
// restarts submits the very same tasks again (idempotent) rather than a second set.
// Migrations never import application code and never change once released.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE scheduler_pipelines (
      pipeline_id   text PRIMARY KEY,
      name          text NOT NULL,
      -- the pipeline as submitted (checked); the stages' tasks are derived from it
      definition    jsonb NOT NULL,
      scheduler_id  text NOT NULL,
      submitted_by  text NOT NULL,
      -- running | completed | failed
      state         text NOT NULL,
      -- index of the stage running now (or the last one, once resolved)
      stage         integer NOT NULL DEFAULT 0,
      -- why the pipeline failed, for people
      reason        text,
      created       timestamptz NOT NULL,
      updated       timestamptz NOT NULL,
      resolved      timestamptz
    );
    CREATE INDEX scheduler_pipelines_running ON scheduler_pipelines (updated) WHERE state = 'running';
    CREATE INDEX scheduler_pipelines_created ON scheduler_pipelines (created DESC);

    CREATE TABLE scheduler_stages (
      pipeline_id    text NOT NULL REFERENCES scheduler_pipelines (pipeline_id) ON DELETE CASCADE,
      stage          integer NOT NULL,
      task_group_id  text NOT NULL UNIQUE,
      -- submitting (tasks being created) | submitted (group sealed) | completed | failed
      state          text NOT NULL,
      -- the created time of the stage's tasks
      created        timestamptz NOT NULL,
      submitted      timestamptz,
      resolved       timestamptz,
      -- per task at resolution: [{name, taskId, state, reasonResolved}]
      outcome        jsonb,
      PRIMARY KEY (pipeline_id, stage)
    );

    -- where the scheduler's HTTP event stream left off (when it runs without RabbitMQ)
    CREATE TABLE scheduler_cursors (
      name           text PRIMARY KEY,
      last_event_id  text NOT NULL
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE scheduler_cursors; DROP TABLE scheduler_stages; DROP TABLE scheduler_pipelines;`.execute(db);
}
