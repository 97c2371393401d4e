// The end of an upload: in one transaction under the task lock, the last chunk is stored (with the
// upload's row, for an upload of one chunk), the upload becomes the artifact's content, the
// artifact becomes present and its artifact-created goes into the outbox. A previous upload (a
// worker that uploaded twice) is handed to the artifact loop to delete.
import type { Insertable } from 'kysely';
import type { Ctx } from '../context.js';
import { ApiError } from '../http/errors.js';
import { withLockedTask } from '../runs/with-task.js';
import type { ArtifactUploadsTable } from '../db/tables.js';
import { insertChunk, type Written } from './chunks.js';
import { artifactCreatedMessage, lockArtifact, type BlobDetails } from './rows.js';
import type { Grant } from './signing.js';

export async function completeUpload(
  ctx: Ctx,
  grant: Extract<Grant, { kind: 'put' }>,
  /** the upload's row, when it is not stored yet */
  uploadRow: Insertable<ArtifactUploadsTable> | undefined,
  uploadId: string,
  written: Written,
): Promise<void> {
  const { taskId, runId, name } = grant;
  await withLockedTask(ctx, taskId, async (trx, t, emit) => {
    const row = await lockArtifact(trx, taskId, runId, name);
    if (!row || row.storage_type !== 's3') {
      throw new ApiError('ResourceExpired', `Artifact ${name} of run ${runId} of task ${taskId} no longer exists (it expired during the upload)`);
    }
    const now = ctx.clock.now();
    const previous = (row.details as BlobDetails).uploadId;
    if (uploadRow) await trx.insertInto('artifact_uploads').values(uploadRow).execute();
    if (written.tail.data.length > 0) await insertChunk(trx, uploadId, written.tail.seq, written.tail.data);
    const done = await trx
      .updateTable('artifact_uploads')
      .set({ completed: now, size: written.size, sha256: written.sha256, expires: null })
      .where('upload_id', '=', uploadId)
      .executeTakeFirst();
    if (done.numUpdatedRows === 0n) {
      throw new ApiError('ResourceExpired', `The upload of artifact ${name} was deleted before it completed (the artifact expired); create it again`);
    }
    if (previous && previous !== uploadId) {
      await trx.updateTable('artifact_uploads').set({ expires: now }).where('upload_id', '=', previous).execute();
    }
    const details: BlobDetails = { ...(row.details as BlobDetails), uploadId, size: written.size, sha256: written.sha256 };
    const updated = await trx
      .updateTable('artifacts')
      .set({ present: true, details: JSON.stringify(details) })
      .where('task_id', '=', taskId)
      .where('run_id', '=', runId)
      .where('name', '=', name)
      .returningAll()
      .executeTakeFirstOrThrow();
    emit(artifactCreatedMessage(t, updated));
  });
}
