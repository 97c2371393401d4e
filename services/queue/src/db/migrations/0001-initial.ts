// The initial schema. Migrations never import application code and never change once released.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE tasks (
      task_id        text PRIMARY KEY,
      task_queue_id  text NOT NULL,
      scheduler_id   text NOT NULL,
      project_id     text NOT NULL,
      task_group_id  text NOT NULL,
      dependencies   jsonb NOT NULL,
      requires       text NOT NULL,
      routes         jsonb NOT NULL,
      priority       text NOT NULL,
      retries        integer NOT NULL,
      retries_left   integer NOT NULL,
      created        timestamptz NOT NULL,
      deadline       timestamptz NOT NULL,
      expires        timestamptz NOT NULL,
      scopes         jsonb NOT NULL,
      payload        jsonb NOT NULL,
      metadata       jsonb NOT NULL,
      tags           jsonb NOT NULL,
      extra          jsonb NOT NULL,
      -- true once the task resolved for the first time (it may be rerun later)
      ever_resolved  boolean NOT NULL DEFAULT false
    );
    CREATE INDEX tasks_group ON tasks (task_group_id, task_id);
    CREATE INDEX tasks_expires ON tasks (expires);

    -- Run history; the task's state is the state of its highest run_id.
    CREATE TABLE runs (
      task_id          text NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
      run_id           integer NOT NULL,
      state            text NOT NULL,
      reason_created   text NOT NULL,
      reason_resolved  text,
      worker_group     text,
      worker_id        text,
      taken_until      timestamptz,
      scheduled        timestamptz NOT NULL,
      started          timestamptz,
      resolved         timestamptz,
      PRIMARY KEY (task_id, run_id)
    );
    -- claim expiry scans only running runs
    CREATE INDEX runs_taken_until ON runs (taken_until) WHERE state = 'running';

    -- Claimable runs only: small and hot, rows leave on claim.
    CREATE TABLE pending (
      task_queue_id  text NOT NULL,
      priority       integer NOT NULL,
      seq            bigserial,
      inserted       timestamptz NOT NULL DEFAULT now(),
      task_id        text NOT NULL,
      run_id         integer NOT NULL,
      PRIMARY KEY (task_id, run_id)
    );
    CREATE INDEX pending_claim ON pending (task_queue_id, priority DESC, seq);

    CREATE TABLE task_deadlines (
      task_id   text PRIMARY KEY REFERENCES tasks (task_id) ON DELETE CASCADE,
      deadline  timestamptz NOT NULL
    );
    CREATE INDEX task_deadlines_deadline ON task_deadlines (deadline);

    CREATE TABLE task_dependencies (
      required_task_id   text NOT NULL,
      dependent_task_id  text NOT NULL,
      requires           text NOT NULL,
      satisfied          boolean NOT NULL DEFAULT false,
      expires            timestamptz NOT NULL,
      PRIMARY KEY (required_task_id, dependent_task_id)
    );
    CREATE INDEX task_dependencies_blocked ON task_dependencies (dependent_task_id) WHERE NOT satisfied;

    CREATE TABLE task_groups (
      task_group_id  text PRIMARY KEY,
      scheduler_id   text NOT NULL,
      expires        timestamptz NOT NULL,
      sealed         timestamptz,
      -- tasks of the group not in a resolved state; 0 after a change => task-group-resolved
      unresolved     integer NOT NULL DEFAULT 0
    );

    CREATE TABLE artifacts (
      task_id       text NOT NULL,
      run_id        integer NOT NULL,
      name          text NOT NULL,
      storage_type  text NOT NULL,
      content_type  text NOT NULL,
      details       jsonb NOT NULL,
      present       boolean NOT NULL,
      expires       timestamptz NOT NULL,
      created       timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (task_id, run_id, name)
    );
    CREATE INDEX artifacts_expires ON artifacts (expires);

    -- Every pulse message, written in the transaction of the change it reports.
    CREATE TABLE outbox (
      id           bigserial PRIMARY KEY,
      exchange     text NOT NULL,
      routing_key  text NOT NULL,
      cc           text[] NOT NULL DEFAULT '{}',
      body         jsonb NOT NULL,
      created      timestamptz NOT NULL DEFAULT now(),
      published    timestamptz
    );
    CREATE INDEX outbox_unpublished ON outbox (id) WHERE published IS NULL;

    CREATE TABLE clients (
      client_id     text PRIMARY KEY,
      access_token  text NOT NULL,
      scopes        jsonb NOT NULL,
      description   text NOT NULL DEFAULT '',
      expires       timestamptz NOT NULL,
      disabled      boolean NOT NULL DEFAULT false
    );

    CREATE TABLE task_queues (
      task_queue_id     text PRIMARY KEY,
      expires           timestamptz NOT NULL,
      last_date_active  timestamptz NOT NULL,
      description       text NOT NULL DEFAULT '',
      stability         text NOT NULL DEFAULT 'experimental'
    );

    CREATE TABLE workers (
      task_queue_id       text NOT NULL,
      worker_group        text NOT NULL,
      worker_id           text NOT NULL,
      recent_tasks        jsonb NOT NULL DEFAULT '[]',
      quarantine_until    timestamptz,
      quarantine_details  jsonb NOT NULL DEFAULT '[]',
      expires             timestamptz NOT NULL,
      first_claim         timestamptz NOT NULL,
      last_date_active    timestamptz,
      PRIMARY KEY (task_queue_id, worker_group, worker_id)
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TABLE workers, task_queues, clients, outbox, artifacts, task_groups,
      task_dependencies, task_deadlines, pending, runs, tasks;
  `.execute(db);
}
