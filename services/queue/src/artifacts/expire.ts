// The artifact loop: deletes artifacts past their `expires`, their bytes first and in bounded
// batches (a 5 GB blob is 5000 chunk rows, too many for one statement), and the bytes of uploads
// that never completed or that a later upload replaced. Rows are taken with SKIP LOCKED, so
// several background processes can run it. The foreign keys cascade too, so bytes never outlive
// their artifact whoever deletes it; this loop just keeps each deletion small.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import { defineLoop } from '../loops/loop.js';

/** Chunk rows (1 MiB each by default) deleted per statement. */
const chunkBatch = 64;
const rowBatch = 500;

async function deleteChunks(ctx: Ctx, now: Date): Promise<number> {
  const { numAffectedRows } = await sql`
    WITH garbage AS (
      (SELECT upload_id FROM artifact_uploads WHERE expires <= ${now} LIMIT ${rowBatch})
      UNION
      (SELECT u.upload_id FROM artifacts a JOIN artifact_uploads u USING (task_id, run_id, name)
        WHERE a.expires <= ${now} LIMIT ${rowBatch})
    ), doomed AS (
      SELECT c.upload_id, c.seq FROM artifact_chunks c JOIN garbage g USING (upload_id)
      LIMIT ${chunkBatch} FOR UPDATE OF c SKIP LOCKED
    )
    DELETE FROM artifact_chunks c USING doomed d WHERE c.upload_id = d.upload_id AND c.seq = d.seq`.execute(ctx.db);
  return Number(numAffectedRows ?? 0);
}

async function deleteUploads(ctx: Ctx, now: Date): Promise<number> {
  const { numAffectedRows } = await sql`
    DELETE FROM artifact_uploads WHERE upload_id IN (
      SELECT u.upload_id FROM artifact_uploads u JOIN artifacts a USING (task_id, run_id, name)
      WHERE (u.expires <= ${now} OR a.expires <= ${now})
        AND NOT EXISTS (SELECT 1 FROM artifact_chunks c WHERE c.upload_id = u.upload_id)
      LIMIT ${rowBatch} FOR UPDATE OF u SKIP LOCKED)`.execute(ctx.db);
  return Number(numAffectedRows ?? 0);
}

async function deleteArtifacts(ctx: Ctx, now: Date): Promise<number> {
  const { numAffectedRows } = await sql`
    DELETE FROM artifacts WHERE (task_id, run_id, name) IN (
      SELECT task_id, run_id, name FROM artifacts a
      WHERE a.expires <= ${now}
        AND NOT EXISTS (SELECT 1 FROM artifact_uploads u WHERE (u.task_id, u.run_id, u.name) = (a.task_id, a.run_id, a.name))
      LIMIT ${rowBatch} FOR UPDATE SKIP LOCKED)`.execute(ctx.db);
  return Number(numAffectedRows ?? 0);
}

export async function expireArtifacts(ctx: Ctx): Promise<{ handled: number; full: boolean; chunks: number; uploads: number; artifacts: number }> {
  const now = ctx.clock.now();
  const chunks = await deleteChunks(ctx, now);
  const uploads = await deleteUploads(ctx, now);
  const artifacts = await deleteArtifacts(ctx, now);
  return {
    handled: chunks + uploads + artifacts,
    full: chunks === chunkBatch || uploads === rowBatch || artifacts === rowBatch,
    chunks, uploads, artifacts,
  };
}

export const artifactExpiryLoop = defineLoop({
  name: 'artifact-expiry',
  intervalMs: (ctx) => ctx.config.expirationIntervalMs,
  runOnce: expireArtifacts,
});
