// Artifact rows and their JSON shapes. `details` holds what the storage type needs:
//   reference {url} · link {artifact} · error {reason, message}
//   s3 {contentLength?} as declared, plus {uploadId, size, sha256} once an upload completed.
import type { Selectable } from 'kysely';
import type { Db, Trx } from '../db/database.js';
import type { ArtifactsTable } from '../db/tables.js';
import type { TaskWithRuns } from '../tasks/status.js';
import { taskMessage, type OutboxMessage } from '../outbox/messages.js';

export type ArtifactRow = Selectable<ArtifactsTable>;

export interface BlobDetails {
  contentLength?: number;
  uploadId?: string;
  size?: number;
  sha256?: string;
}

function selectArtifact(db: Db | Trx, taskId: string, runId: number, name: string) {
  return db.selectFrom('artifacts').selectAll().where('task_id', '=', taskId).where('run_id', '=', runId).where('name', '=', name);
}

export function loadArtifact(db: Db | Trx, taskId: string, runId: number, name: string): Promise<ArtifactRow | undefined> {
  return selectArtifact(db, taskId, runId, name).executeTakeFirst();
}

export function lockArtifact(trx: Trx, taskId: string, runId: number, name: string): Promise<ArtifactRow | undefined> {
  return selectArtifact(trx, taskId, runId, name).forUpdate().executeTakeFirst();
}

/** The artifact as artifactInfo and listArtifacts show it. */
export function artifactJson(row: ArtifactRow): Record<string, unknown> {
  const out: Record<string, unknown> = {
    storageType: row.storage_type,
    name: row.name,
    expires: new Date(row.expires).toISOString(),
    contentType: row.content_type,
  };
  if (row.storage_type === 's3') {
    const d = row.details as BlobDetails;
    const length = d.size ?? d.contentLength;
    if (length !== undefined) out.contentLength = length;
  }
  return out;
}

/** artifact-created for an artifact that just became present, with the run's worker. */
export function artifactCreatedMessage(t: TaskWithRuns, row: ArtifactRow): OutboxMessage {
  const run = t.runs[row.run_id]!;
  return taskMessage('artifactCreated', t, {
    runId: row.run_id,
    workerGroup: run.worker_group,
    workerId: run.worker_id,
    artifact: {
      storageType: row.storage_type,
      name: row.name,
      expires: new Date(row.expires).toISOString(),
      contentType: row.content_type,
    },
  });
}
