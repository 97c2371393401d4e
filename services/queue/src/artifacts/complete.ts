// The end of an upload: in one transaction under the task lock, the last chunk is stored (with the
// upload's row, for an upload of one chunk), the upload becomes the artifact's content, the
// artifact becomes present and its artifact-created goes into the outbox. A previous upload (a
// worker that uploaded twice) is handed to the artifact loop to delete. After the task lock, the
// artifact's lock and all the writes are one statement: a log upload is the most frequent write
// after the lifecycle's own.
import { sql, type Insertable } from 'kysely';
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import { ApiError } from '../http/errors.js';
import { withLockedTask } from '../runs/with-task.js';
import type { ArtifactUploadsTable } from '../db/tables.js';
import type { Written } from './chunks.js';
import { artifactCreatedMessage, type ArtifactRow, type BlobDetails } from './rows.js';
import type { Grant } from './signing.js';

/** What an upload's checks look at (see transfer.ts). */
export type UploadTarget = Pick<ArtifactRow, 'storage_type' | 'expires' | 'details'>;

interface Completion {
  taskId: string;
  runId: number;
  name: string;
  /** the upload's row, when it is not stored yet (an upload of one chunk) */
  uploadRow: Insertable<ArtifactUploadsTable> | undefined;
  uploadId: string;
  written: Written;
  now: Date;
}

/**
 * Locks the artifact and, if it is an s3 artifact, writes the upload as its content, all in one
 * statement. Returns the artifact as it was (undefined: gone, or not s3) and as it is now
 * (undefined: nothing written because the upload's stored row was gone). The caller checks what it
 * was and throws if the upload may not complete: the transaction then rolls the writes back.
 */
async function writeCompletion(trx: Trx, c: Completion): Promise<{ before: UploadTarget | undefined; updated: ArtifactRow | undefined }> {
  const { written, uploadId, now } = c;
  const upload = c.uploadRow
    ? sql`INSERT INTO artifact_uploads (upload_id, task_id, run_id, name, chunk_bytes, content_encoding, size, sha256, completed, expires)
        SELECT ${uploadId}::uuid, task_id, run_id, name, ${c.uploadRow.chunk_bytes}::int, ${c.uploadRow.content_encoding ?? null}::text,
          ${written.size}::bigint, ${written.sha256}::text, ${now}::timestamptz, NULL
        FROM target
        RETURNING upload_id`
    : sql`UPDATE artifact_uploads SET completed = ${now}::timestamptz, size = ${written.size}::bigint, sha256 = ${written.sha256}::text, expires = NULL
        WHERE upload_id = ${uploadId}::uuid AND EXISTS (SELECT 1 FROM target) RETURNING upload_id`;
  const tail = written.tail.data.length > 0
    ? sql`, tail AS (INSERT INTO artifact_chunks (upload_id, seq, data) SELECT upload_id, ${written.tail.seq}::int, ${written.tail.data}::bytea FROM upload)`
    : sql``;
  const content = JSON.stringify({ uploadId, size: written.size, sha256: written.sha256 } satisfies BlobDetails);
  const { rows } = await sql<ArtifactRow & { before_expires: Date; before_details: ArtifactRow['details'] }>`
    WITH target AS (
      SELECT task_id, run_id, name, expires, details FROM artifacts
      WHERE task_id = ${c.taskId} AND run_id = ${c.runId}::int AND name = ${c.name} AND storage_type = 's3'
      FOR UPDATE
    ), upload AS (${upload})${tail},
    superseded AS (
      -- the content it replaces is garbage for the artifact loop
      UPDATE artifact_uploads u SET expires = ${now}::timestamptz FROM target t
      WHERE u.upload_id = (t.details->>'uploadId')::uuid AND u.upload_id <> ${uploadId}::uuid AND EXISTS (SELECT 1 FROM upload)
    ), updated AS (
      UPDATE artifacts a SET present = true, details = t.details || ${content}::jsonb FROM target t
      WHERE a.task_id = t.task_id AND a.run_id = t.run_id AND a.name = t.name AND EXISTS (SELECT 1 FROM upload)
      RETURNING a.*
    )
    SELECT t.expires AS before_expires, t.details AS before_details, u.* FROM target t LEFT JOIN updated u ON true`.execute(trx);
  const row = rows[0];
  if (!row) return { before: undefined, updated: undefined };
  const { before_expires, before_details, ...updated } = row;
  return {
    before: { storage_type: 's3', expires: before_expires, details: before_details },
    updated: updated.task_id === null ? undefined : (updated as ArtifactRow),
  };
}

export async function completeUpload(
  ctx: Ctx,
  grant: Extract<Grant, { kind: 'put' }>,
  /** the upload's row, when it is not stored yet */
  uploadRow: Insertable<ArtifactUploadsTable> | undefined,
  uploadId: string,
  written: Written,
  /** checks of the artifact an upload must pass, when they were not made before its bytes were read */
  checkTarget?: (row: UploadTarget | undefined) => asserts row is UploadTarget,
): Promise<void> {
  const { taskId, runId, name } = grant;
  await withLockedTask(ctx, taskId, async (trx, t, emit) => {
    const { before, updated } = await writeCompletion(trx, { taskId, runId, name, uploadRow, uploadId, written, now: ctx.clock.now() });
    checkTarget?.(before);
    if (!before) {
      throw new ApiError('ResourceExpired', `Artifact ${name} of run ${runId} of task ${taskId} no longer exists (it expired during the upload)`);
    }
    if (!updated) {
      throw new ApiError('ResourceExpired', `The upload of artifact ${name} was deleted before it completed (the artifact expired); create it again`);
    }
    emit(artifactCreatedMessage(t, updated));
  });
}
