// Kysely table types. Keep in step with migrations/.
import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type Json<T = unknown> = ColumnType<T, string, string>;

export interface TasksTable {
  task_id: string;
  task_queue_id: string;
  scheduler_id: string;
  project_id: string;
  task_group_id: string;
  dependencies: Json<string[]>;
  requires: string;
  routes: Json<string[]>;
  priority: string;
  retries: number;
  retries_left: number;
  created: Timestamp;
  deadline: Timestamp;
  expires: Timestamp;
  scopes: Json<string[]>;
  payload: Json<Record<string, unknown>>;
  metadata: Json<Record<string, unknown>>;
  tags: Json<Record<string, string>>;
  extra: Json<Record<string, unknown>>;
}

export interface RunsTable {
  task_id: string;
  run_id: number;
  state: string;
  reason_created: string;
  reason_resolved: string | null;
  worker_group: string | null;
  worker_id: string | null;
  taken_until: Timestamp | null;
  scheduled: Timestamp;
  started: Timestamp | null;
  resolved: Timestamp | null;
}

export interface PendingTable {
  task_queue_id: string;
  priority: number;
  seq: Generated<string>;
  inserted: Generated<Date>;
  task_id: string;
  run_id: number;
}

export interface TaskDeadlinesTable {
  task_id: string;
  deadline: Timestamp;
}

export interface TaskDependenciesTable {
  required_task_id: string;
  dependent_task_id: string;
  requires: string;
  satisfied: Generated<boolean>;
  expires: Timestamp;
}

export interface TaskGroupsTable {
  task_group_id: string;
  scheduler_id: string;
  expires: Timestamp;
  sealed: Timestamp | null;
  unresolved: Generated<number>;
}

export interface ArtifactsTable {
  task_id: string;
  run_id: number;
  name: string;
  storage_type: string;
  content_type: string;
  details: Json<Record<string, unknown>>;
  present: boolean;
  expires: Timestamp;
  created: Generated<Date>;
}

export interface OutboxTable {
  id: Generated<string>;
  exchange: string;
  routing_key: string;
  cc: ColumnType<string[], string[] | undefined, string[]>;
  body: Json<Record<string, unknown>>;
  created: Generated<Date>;
  published: Timestamp | null;
}

export interface ClientsTable {
  client_id: string;
  access_token: string;
  scopes: Json<string[]>;
  description: Generated<string>;
  expires: Timestamp;
  disabled: Generated<boolean>;
}

export interface TaskQueuesTable {
  task_queue_id: string;
  expires: Timestamp;
  last_date_active: Timestamp;
  description: Generated<string>;
  stability: Generated<string>;
}

export interface WorkersTable {
  task_queue_id: string;
  worker_group: string;
  worker_id: string;
  recent_tasks: ColumnType<Array<{ taskId: string; runId: number }>, string | undefined, string>;
  quarantine_until: Timestamp | null;
  quarantine_details: ColumnType<unknown[], string | undefined, string>;
  expires: Timestamp;
  first_claim: Timestamp;
  last_date_active: Timestamp | null;
}

export interface ArtifactUploadsTable {
  upload_id: string;
  task_id: string;
  run_id: number;
  name: string;
  chunk_bytes: number;
  content_encoding: string | null;
  /** bigint: arrives as a string */
  size: ColumnType<string | null, number | string | null, number | string | null>;
  sha256: string | null;
  completed: Timestamp | null;
  expires: Timestamp | null;
}

export interface ArtifactChunksTable {
  upload_id: string;
  seq: number;
  data: Buffer;
}

export interface ResolvedTasksQueueTable {
  id: Generated<string>;
  task_id: string;
  completed: boolean;
  after_dependent: Generated<string>;
  until_dependent: string | null;
  created: Generated<Date>;
}

export interface SchedulerPipelinesTable {
  pipeline_id: string;
  name: string;
  definition: Json<Record<string, unknown>>;
  scheduler_id: string;
  submitted_by: string;
  state: string;
  stage: Generated<number>;
  reason: string | null;
  created: Timestamp;
  updated: Timestamp;
  resolved: Timestamp | null;
}

export interface SchedulerStagesTable {
  pipeline_id: string;
  stage: number;
  task_group_id: string;
  state: string;
  created: Timestamp;
  submitted: Timestamp | null;
  resolved: Timestamp | null;
  outcome: Json<Array<Record<string, unknown>>> | null;
}

export interface SchedulerCursorsTable {
  name: string;
  last_event_id: string;
}

export interface Database {
  tasks: TasksTable;
  runs: RunsTable;
  pending: PendingTable;
  task_deadlines: TaskDeadlinesTable;
  task_dependencies: TaskDependenciesTable;
  task_groups: TaskGroupsTable;
  artifacts: ArtifactsTable;
  artifact_uploads: ArtifactUploadsTable;
  artifact_chunks: ArtifactChunksTable;
  outbox: OutboxTable;
  clients: ClientsTable;
  task_queues: TaskQueuesTable;
  workers: WorkersTable;
  resolved_tasks_queue: ResolvedTasksQueueTable;
  scheduler_pipelines: SchedulerPipelinesTable;
  scheduler_stages: SchedulerStagesTable;
  scheduler_cursors: SchedulerCursorsTable;
}
