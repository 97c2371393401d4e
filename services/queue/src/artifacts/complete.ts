// The end of an upload: in one transaction under the task lock, the last chunk is stored (with the
// upload's row, for an upload of one chunk), the upload becomes the artifact's content, the
// artifact becomes present and its artifact-created goes into the outbox. A previous upload (a
// worker that uploaded twice) is handed to the artifact loop to delete. After the locks, the
// writes are one statement: a log upload is the most frequent write after the lifecycle's own.
import { sql, type Insertable } from 'kysely';
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import { ApiError } from '../http/errors.js';
import { withLockedTask } from '../runs/with-task.js';
import type { ArtifactUploadsTable } from '../db/tables.js';
import type { Written } from './chunks.js';
import { artifactCreatedMessage, lockArtifact, type ArtifactRow, type BlobDetails } from './rows.js';
import type { Grant } from './signing.js';

interface Completion {
  taskId: string;
  runId: number;
  name: string;
  /** the upload's row, when it is not stored yet (an upload of one chunk) */
  uploadRow: Insertable<ArtifactUploadsTable> | undefined;
  uploadId: string;
  written: Written;
  /** the artifact's upload this one replaces, if any */
  previous: string | undefined;
  details: BlobDetails;
  now: Date;
}

/** The artifact's row after the writes, or undefined when the upload's row was gone (expired). */
async function writeCompletion(trx: Trx, c: Completion): Promise<ArtifactRow | undefined> {
  const { written, uploadId, now } = c;
  const upload = c.uploadRow
    ? sql`INSERT INTO artifact_uploads (upload_id, task_id, run_id, name, chunk_bytes, content_encoding, size, sha256, completed, expires)
        VALUES (${uploadId}::uuid, ${c.taskId}, ${c.runId}::int, ${c.name}, ${c.uploadRow.chunk_bytes}::int, ${c.uploadRow.content_encoding ?? null}::text,
          ${written.size}::bigint, ${written.sha256}::text, ${now}::timestamptz, NULL)
        RETURNING upload_id`
    : sql`UPDATE artifact_uploads SET completed = ${now}::timestamptz, size = ${written.size}::bigint, sha256 = ${written.sha256}::text, expires = NULL
        WHERE upload_id = ${uploadId}::uuid RETURNING upload_id`;
  const tail = written.tail.data.length > 0
    ? sql`, tail AS (INSERT INTO artifact_chunks (upload_id, seq, data) SELECT upload_id, ${written.tail.seq}::int, ${written.tail.data}::bytea FROM upload)`
    : sql``;
  const superseded = c.previous && c.previous !== uploadId
    ? sql`, superseded AS (UPDATE artifact_uploads SET expires = ${now}::timestamptz WHERE upload_id = ${c.previous}::uuid AND EXISTS (SELECT 1 FROM upload))`
    : sql``;
  const { rows } = await sql<ArtifactRow>`
    WITH upload AS (${upload})${tail}${superseded}
    UPDATE artifacts SET present = true, details = ${JSON.stringify(c.details)}::jsonb
    WHERE task_id = ${c.taskId} AND run_id = ${c.runId}::int AND name = ${c.name} AND EXISTS (SELECT 1 FROM upload)
    RETURNING *`.execute(trx);
  return rows[0];
}

export async function completeUpload(
  ctx: Ctx,
  grant: Extract<Grant, { kind: 'put' }>,
  /** the upload's row, when it is not stored yet */
  uploadRow: Insertable<ArtifactUploadsTable> | undefined,
  uploadId: string,
  written: Written,
  /** checks of the artifact an upload must pass, when they were not made before its bytes were read */
  checkTarget?: (row: ArtifactRow | undefined) => asserts row is ArtifactRow,
): Promise<void> {
  const { taskId, runId, name } = grant;
  await withLockedTask(ctx, taskId, async (trx, t, emit) => {
    const row = await lockArtifact(trx, taskId, runId, name);
    checkTarget?.(row);
    if (!row || row.storage_type !== 's3') {
      throw new ApiError('ResourceExpired', `Artifact ${name} of run ${runId} of task ${taskId} no longer exists (it expired during the upload)`);
    }
    const previous = (row.details as BlobDetails).uploadId;
    const details: BlobDetails = { ...(row.details as BlobDetails), uploadId, size: written.size, sha256: written.sha256 };
    const updated = await writeCompletion(trx, { taskId, runId, name, uploadRow, uploadId, written, previous, details, now: ctx.clock.now() });
    if (!updated) {
      throw new ApiError('ResourceExpired', `The upload of artifact ${name} was deleted before it completed (the artifact expired); create it again`);
    }
    emit(artifactCreatedMessage(t, updated));
  });
}
