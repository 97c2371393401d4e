// The end of an upload: under the task's lock, the last chunk is stored (with the upload's row, for
// an upload of one chunk), the upload becomes the artifact's content, the artifact becomes present
// and its artifact-created goes into the outbox. A previous upload (a worker that uploaded twice)
// is handed to the artifact loop to delete.
//
// Uploads that complete together share one transaction (db/batcher.ts): workers upload a log for
// every task, and with a few tasks in flight their completions overlap (bench/worker measured two
// or more in flight for most of them). Per batch, whatever its size: BEGIN with the task locks (in
// task_id order) and the lock of their pending rows and the artifacts (one message:
// db/batch-transaction.ts), read the tasks and runs, check each upload against its artifact as it
// is, write every upload that passes (one statement a round), the outbox write with COMMIT — 4 round
// trips; one upload alone took 7.
//
// Lock order (runs/README.md): task rows first, sorted; then pending rows and artifact rows. Those
// two are taken in one statement, in no set order between them: under the task locks nothing else
// waits for both (claimWork takes pending rows SKIP LOCKED, the artifact loop artifact rows SKIP
// LOCKED, and createArtifact's statement of fresh.ts only inserts new artifacts).
import { sql, type Insertable } from 'kysely';
import type { Ctx } from '../context.js';
import { batchTransaction, type BatchResult } from '../db/batch-transaction.js';
import { Batcher, batcherPerService, type Outcome } from '../db/batcher.js';
import type { Trx } from '../db/database.js';
import type { ArtifactUploadsTable } from '../db/tables.js';
import { template } from '../db/template.js';
import { ApiError } from '../http/errors.js';
import type { OutboxMessage } from '../outbox/messages.js';
import { outboxStatement } from '../outbox/write.js';
import { taskNotFound } from '../runs/with-task.js';
import { loadTasks } from '../tasks/status.js';
import type { Written } from './chunks.js';
import { artifactCreatedMessage, type ArtifactRow, type BlobDetails } from './rows.js';
import type { Grant } from './signing.js';

/** What an upload's checks look at (see transfer.ts). */
export type UploadTarget = Pick<ArtifactRow, 'storage_type' | 'expires' | 'details'>;

export interface Completion {
  grant: Extract<Grant, { kind: 'put' }>;
  /** the upload's row, when it is not stored yet (an upload of one chunk) */
  uploadRow: Insertable<ArtifactUploadsTable> | undefined;
  uploadId: string;
  written: Written;
  /** checks of the artifact an upload must pass, when they were not made before its bytes were read */
  checkTarget?: (row: UploadTarget | undefined) => asserts row is UploadTarget;
}

// Two lanes and up to 16 per batch, as the other batchers: one batch gathers while the other waits
// on PostgreSQL, and a batch's tail chunks (up to a chunk each, 1 MiB by default) stay bounded.
export const completionBatcher = batcherPerService((ctx: Ctx) => new Batcher<Completion, void>((items) => serveCompletions(ctx, items), { name: 'artifact-upload', maxBatch: 16, lanes: 2 }));

export function completeUpload(ctx: Ctx, c: Completion): Promise<void> {
  return completionBatcher(ctx).submit(c);
}

const keyOf = (g: { taskId: string; runId: number; name: string }) => JSON.stringify([g.taskId, g.runId, g.name]);

export async function serveCompletions(ctx: Ctx, items: Completion[]): Promise<Array<Outcome<void>>> {
  const ids = [...new Set(items.map((i) => i.grant.taskId))].sort();
  // BEGIN with the task locks, and the outbox write with COMMIT (db/batch-transaction.ts); a task
  // that does not exist has no pending rows or artifacts, and loadTasks leaves it out
  return batchTransaction(ctx.batchDb, ids, lockPendingAndArtifacts(ids, items.map((i) => i.grant)), async (trx, locked): Promise<BatchResult<Array<Outcome<void>>>> => {
    const targets = targetsOf(locked);
    // a statement begun after the pending locks: the runs it reads stay true until commit
    const tasks = new Map((await loadTasks(trx, ids)).map((t) => [t.task.task_id, t]));
    const now = ctx.clock.now();
    const outcomes: Array<Outcome<void>> = items.map(() => ({ ok: true, value: undefined }));
    const messages: OutboxMessage[] = [];

    // Rounds: an artifact uploaded twice in one batch is written twice, in arrival order, the
    // second round seeing what the first left (as if they had come one after the other).
    let pending = items.map((item, index) => ({ item, index }));
    while (pending.length > 0) {
      const round: Array<{ item: Completion; index: number; details: BlobDetails; previous: string | undefined }> = [];
      const later: typeof pending = [];
      const seen = new Set<string>();
      for (const { item, index } of pending) {
        const { taskId, runId, name } = item.grant;
        const key = keyOf(item.grant);
        if (seen.has(key)) {
          later.push({ item, index });
          continue;
        }
        seen.add(key);
        try {
          if (!tasks.has(taskId)) throw taskNotFound(taskId);
          const row = targets.get(key);
          item.checkTarget?.(row);
          if (!row || row.storage_type !== 's3') {
            throw new ApiError('ResourceExpired', `Artifact ${name} of run ${runId} of task ${taskId} no longer exists (it expired during the upload)`);
          }
          const before = row.details as BlobDetails;
          const details = { ...before, uploadId: item.uploadId, size: item.written.size, sha256: item.written.sha256 };
          round.push({ item, index, details, previous: before.uploadId });
        } catch (error) {
          if (!(error instanceof ApiError)) throw error;
          outcomes[index] = { ok: false, error };
        }
      }
      const updated = await writeCompletions(trx, round, now);
      for (const { item, index } of round) {
        const row = updated.get(item.uploadId);
        if (!row) {
          const error = new ApiError('ResourceExpired', `The upload of artifact ${item.grant.name} was deleted before it completed (the artifact expired); create it again`);
          outcomes[index] = { ok: false, error };
          continue;
        }
        targets.set(keyOf(item.grant), row);
        messages.push(artifactCreatedMessage(tasks.get(item.grant.taskId)!, row));
      }
      pending = later;
    }
    return { value: outcomes, last: messages.length > 0 ? [outboxStatement(ctx.config.exchangePrefix, messages)] : [] };
  });
}

/**
 * The statement sent with BEGIN and the task locks: it locks the tasks' pending rows (lockTask's
 * second step) and the artifacts the uploads go to, in key order, and reads the artifacts. The
 * artifacts are found through the primary key by task_id = ANY (see writeCompletions). (The
 * pending CTE is read by the UNION ALL's second branch, so it runs: a CTE nobody reads does not.)
 */
function lockPendingAndArtifacts(taskIds: string[], keys: Array<{ taskId: string; runId: number; name: string }>) {
  return lockStatement({ taskIds, keyTasks: keys.map((k) => k.taskId), keyRuns: keys.map((k) => k.runId), keyNames: keys.map((k) => k.name) });
}

const lockStatement = template<{ taskIds: string[]; keyTasks: string[]; keyRuns: number[]; keyNames: string[] }, LockedTarget>((v) => sql`
  WITH held AS (SELECT 1 FROM pending WHERE task_id = ANY(${v.taskIds}::text[]) ORDER BY task_id, run_id FOR UPDATE),
  target AS (
    SELECT a.task_id, a.run_id, a.name, a.storage_type, a.expires, a.details FROM artifacts a
    WHERE a.task_id = ANY(${v.taskIds}::text[])
      AND (a.task_id, a.run_id, a.name) IN (SELECT * FROM unnest(${v.keyTasks}::text[], ${v.keyRuns}::int[], ${v.keyNames}::text[]))
    ORDER BY a.task_id, a.run_id, a.name
    FOR UPDATE OF a
  )
  SELECT * FROM target UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL FROM held`);

type LockedTarget = { task_id: string | null; run_id: number; name: string; storage_type: string; expires: Date; details: ArtifactRow['details'] };

/** lockPendingAndArtifacts' rows as the artifacts by key. */
function targetsOf(rows: LockedTarget[]): Map<string, UploadTarget> {
  const targets = new Map<string, UploadTarget>();
  for (const r of rows) {
    if (r.task_id === null) continue;
    targets.set(keyOf({ taskId: r.task_id, runId: r.run_id, name: r.name }), { storage_type: r.storage_type, expires: r.expires, details: r.details });
  }
  return targets;
}

/**
 * One statement for every upload of a round: the upload's row inserted complete (one chunk) or
 * marked complete (stored while its chunks were), its last chunk, the upload it replaces handed
 * to the artifact loop, the artifact present with the upload as its content. An upload whose
 * stored row is gone (the artifact loop deleted it) writes nothing. Returns the artifacts as
 * updated, by upload id. The last chunks travel as one bytea (binary) cut by offsets, not as a
 * bytea[] (sent as hex text).
 */
async function writeCompletions(
  trx: Trx,
  round: Array<{ item: Completion; details: BlobDetails; previous: string | undefined }>,
  now: Date,
): Promise<Map<string, ArtifactRow>> {
  const out = new Map<string, ArtifactRow>();
  if (round.length === 0) return out;
  const tails = round.map(({ item }) => item.written.tail.data);
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tails) {
    offsets.push(offset);
    offset += t.length;
  }
  const col = <T>(f: (r: (typeof round)[number]) => T) => round.map(f);
  // each table is also given an = ANY(array) condition on its key, so it is reached through its
  // index whatever the planner makes of the join with the input (joined to it alone, a table of a
  // few thousand rows is read whole by a hash join, and a prepared statement keeps its plan)
  const taskIds = [...new Set(col((r) => r.item.grant.taskId))];
  const stored = round.filter((r) => r.item.uploadRow === undefined).map((r) => r.item.uploadId);
  const previous = round.flatMap((r) => (r.previous ? [r.previous] : []));
  const { rows } = await sql<ArtifactRow & { upload_id: string }>`
    WITH input AS (
      SELECT * FROM unnest(
        ${col((r) => r.item.uploadId)}::uuid[], ${col((r) => r.item.grant.taskId)}::text[], ${col((r) => r.item.grant.runId)}::int[],
        ${col((r) => r.item.grant.name)}::text[], ${col((r) => r.item.uploadRow !== undefined)}::bool[],
        ${col((r) => r.item.uploadRow?.chunk_bytes ?? 0)}::int[], ${col((r) => r.item.uploadRow?.content_encoding ?? null)}::text[],
        ${col((r) => r.item.written.size)}::bigint[], ${col((r) => r.item.written.sha256)}::text[],
        ${col((r) => r.item.written.tail.seq)}::int[], ${offsets}::int[], ${tails.map((t) => t.length)}::int[],
        ${col((r) => r.previous ?? null)}::uuid[], ${col((r) => JSON.stringify(r.details))}::jsonb[]
      ) AS i (upload_id, task_id, run_id, name, new_row, chunk_bytes, content_encoding, size, sha256, tail_seq, tail_offset, tail_length, previous, details)
    ), inserted AS (
      INSERT INTO artifact_uploads (upload_id, task_id, run_id, name, chunk_bytes, content_encoding, size, sha256, completed, expires)
      SELECT upload_id, task_id, run_id, name, chunk_bytes, content_encoding, size, sha256, ${now}::timestamptz, NULL FROM input WHERE new_row
      RETURNING upload_id
    ), completed AS (
      UPDATE artifact_uploads u SET completed = ${now}::timestamptz, size = i.size, sha256 = i.sha256, expires = NULL
      FROM input i WHERE u.upload_id = ANY(${stored}::uuid[]) AND u.upload_id = i.upload_id
      RETURNING u.upload_id
    ), upload AS (
      SELECT i.* FROM input i JOIN (SELECT upload_id FROM inserted UNION ALL SELECT upload_id FROM completed) done USING (upload_id)
    ), tail AS (
      INSERT INTO artifact_chunks (upload_id, seq, data)
      SELECT upload_id, tail_seq, substring(${Buffer.concat(tails)}::bytea FROM tail_offset + 1 FOR tail_length) FROM upload WHERE tail_length > 0
    ), superseded AS (
      UPDATE artifact_uploads SET expires = ${now}::timestamptz
      WHERE upload_id = ANY(${previous}::uuid[]) AND upload_id IN (SELECT previous FROM upload WHERE previous <> upload_id)
    )
    UPDATE artifacts a SET present = true, details = i.details FROM upload i
    WHERE a.task_id = ANY(${taskIds}::text[]) AND a.task_id = i.task_id AND a.run_id = i.run_id AND a.name = i.name
    RETURNING a.*, i.upload_id`.execute(trx);
  for (const { upload_id, ...row } of rows) out.set(upload_id, row as ArtifactRow);
  return out;
}
