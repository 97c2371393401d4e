// createArtifact: one transaction under the task lock (so the run cannot resolve half-way), the
// same create twice is an idempotent success, a different one a 409. A new s3 artifact of a running
// run (what workers do for every log) takes the one-statement path of fresh.ts instead.
//
// Presence and artifact-created: reference, link and error artifacts are present at once and their
// artifact-created is written with them, on every create (as the reference does). An s3 artifact is
// present only once its bytes are uploaded: its artifact-created is written by the upload's
// completing transaction, so a listener never fetches an artifact whose bytes are not there yet
// (the reference publishes nothing for s3 and redirects to an S3 URL that may still be empty).
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import { ApiError } from '../http/errors.js';
import { withLockedTask } from '../runs/with-task.js';
import { loadTask, type TaskWithRuns } from '../tasks/status.js';
import { insertFreshS3 } from './fresh.js';
import { artifactCreatedMessage, lockArtifact, type ArtifactRow, type BlobDetails } from './rows.js';
import { putUrl, putUrlLifetimeMs } from './signing.js';

/** Artifacts may still be created this long after a run was resolved as exception (the reference's 25 min). */
export const exceptionGraceMs = 25 * 60 * 1000;
const pastSkewMs = 15 * 60 * 1000;
const defaultContentType = 'application/binary';
const maxRunId = 2 ** 31 - 1;

export type CreateArtifactBody =
  | { storageType: 's3'; expires: string; contentType: string; contentLength?: number }
  | { storageType: 'object'; expires: string; contentType?: string; contentLength?: number }
  | { storageType: 'reference'; expires: string; url: string; contentType?: string }
  | { storageType: 'link'; expires: string; artifact: string; contentType?: string }
  | { storageType: 'error'; expires: string; reason: string; message: string };

interface Incoming {
  storageType: string;
  contentType: string;
  expires: Date;
  details: Record<string, unknown>;
}

function incomingOf(body: CreateArtifactBody): Incoming {
  const expires = new Date(body.expires);
  switch (body.storageType) {
    case 's3':
      return {
        storageType: 's3', contentType: body.contentType, expires,
        details: body.contentLength !== undefined ? { contentLength: body.contentLength } : {},
      };
    case 'reference':
      return { storageType: 'reference', contentType: body.contentType ?? defaultContentType, expires, details: { url: body.url } };
    case 'link':
      return { storageType: 'link', contentType: body.contentType ?? defaultContentType, expires, details: { artifact: body.artifact } };
    case 'error':
      return { storageType: 'error', contentType: defaultContentType, expires, details: { reason: body.reason, message: body.message } };
    default:
      throw new ApiError(
        'InputError',
        `storageType ${body.storageType} needs the Taskcluster object service, which Conveyor does not run. ` +
          'Use storageType s3: Conveyor stores the bytes itself and answers with a putUrl to upload them to.',
      );
  }
}

/** The details a re-post must repeat; an s3 artifact's upload state is not part of what was posted. */
function postedDetails(storageType: string, details: Record<string, unknown>): Record<string, unknown> {
  if (storageType !== 's3') return details;
  const { contentLength } = details as BlobDetails;
  return contentLength !== undefined ? { contentLength } : {};
}

function sameJson(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const keys = Object.keys(a).sort();
  return JSON.stringify(keys.map((k) => [k, a[k]])) === JSON.stringify(Object.keys(b).sort().map((k) => [k, b[k]]));
}

/** Why a re-post cannot update the existing artifact, or undefined if it can. */
function conflictReason(existing: ArtifactRow, incoming: Incoming): string | undefined {
  if (incoming.expires.getTime() < new Date(existing.expires).getTime()) {
    return `it expires ${new Date(existing.expires).toISOString()}; a repeat may keep or extend that, not shorten it`;
  }
  // a reference may be re-pointed, or turned into a link
  if (existing.storage_type === 'reference' && (incoming.storageType === 'reference' || incoming.storageType === 'link')) return undefined;
  if (existing.storage_type !== incoming.storageType) return `it has storageType ${existing.storage_type}, not ${incoming.storageType}`;
  if (incoming.storageType !== 'link' && existing.content_type !== incoming.contentType) {
    return `it has contentType ${existing.content_type}, not ${incoming.contentType}`;
  }
  if (!sameJson(postedDetails(existing.storage_type, existing.details), incoming.details)) {
    return `it was created with ${JSON.stringify(postedDetails(existing.storage_type, existing.details))}`;
  }
  return undefined;
}

function checkRun(ctx: Ctx, t: TaskWithRuns, runId: number): void {
  const run = t.runs[runId];
  const taskId = t.task.task_id;
  if (!run) throw new ApiError('InputError', `Task ${taskId} has no run ${runId}`, { taskId, runId });
  if (!run.worker_group || !run.worker_id) {
    throw new ApiError('InputError', `Run ${runId} of task ${taskId} was never claimed by a worker`, { taskId, runId });
  }
  if (run.state === 'running') return;
  const resolved = run.resolved ? new Date(run.resolved).getTime() : 0;
  if (run.state === 'exception' && ctx.clock.now().getTime() - resolved < exceptionGraceMs) return;
  throw new ApiError(
    'RequestConflict',
    `Artifacts cannot be created for run ${runId} of task ${taskId}: it is ${run.state}` +
      (run.state === 'exception' ? ` since ${new Date(resolved).toISOString()}, more than 25 minutes ago` : '') +
      '. Artifacts are accepted while the run is running, and for 25 minutes after it is resolved as exception.',
    { taskId, runId },
  );
}

async function upsert(trx: Trx, taskId: string, runId: number, name: string, incoming: Incoming): Promise<ArtifactRow> {
  const present = incoming.storageType !== 's3';
  const existing = await lockArtifact(trx, taskId, runId, name);
  if (!existing) {
    return trx
      .insertInto('artifacts')
      .values({
        task_id: taskId, run_id: runId, name,
        storage_type: incoming.storageType, content_type: incoming.contentType,
        details: JSON.stringify(incoming.details), present, expires: incoming.expires,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
  }
  const why = conflictReason(existing, incoming);
  if (why) {
    throw new ApiError('RequestConflict', `Artifact ${name} of run ${runId} of task ${taskId} already exists and differs: ${why}`, {
      taskId, runId, name,
    });
  }
  // an s3 artifact keeps its uploaded content across repeats
  const details = incoming.storageType === 's3' ? { ...existing.details, ...incoming.details } : incoming.details;
  return trx
    .updateTable('artifacts')
    .set({
      storage_type: incoming.storageType, content_type: incoming.contentType,
      details: JSON.stringify(details), expires: incoming.expires,
      present: incoming.storageType === 's3' ? existing.present : true,
    })
    .where('task_id', '=', taskId)
    .where('run_id', '=', runId)
    .where('name', '=', name)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function createArtifact(ctx: Ctx, taskId: string, runId: number, name: string, body: CreateArtifactBody) {
  const now = ctx.clock.now();
  const incoming = incomingOf(body);
  // the date-time format admits a few forms JavaScript cannot read (a leap second, an hour-only offset)
  if (Number.isNaN(incoming.expires.getTime())) {
    throw new ApiError('InputError', `expires ${body.expires} is not a date-time this service can read; use RFC 3339 like 2025-01-31T12:00:00.000Z`);
  }
  if (incoming.expires.getTime() < now.getTime() - pastSkewMs) {
    throw new ApiError('InputError', `expires ${body.expires} lies in the past`, { expires: body.expires });
  }
  const declared = (incoming.details as BlobDetails).contentLength;
  if (declared !== undefined && declared > ctx.config.maxArtifactBytes) {
    throw new ApiError('InputTooLarge', `contentLength ${declared} exceeds the largest artifact accepted (${ctx.config.maxArtifactBytes} bytes)`, {
      maxArtifactBytes: ctx.config.maxArtifactBytes,
    });
  }
  const s3Answer = (row: ArtifactRow) => {
    const urlExpires = new Date(Math.min(now.getTime() + putUrlLifetimeMs, new Date(row.expires).getTime()));
    return {
      storageType: 's3',
      putUrl: putUrl(ctx, { taskId, runId, name, expires: urlExpires }),
      expires: urlExpires.toISOString(),
      contentType: row.content_type,
    };
  };
  // (a run id beyond PostgreSQL's integer names no run: the locked path says so)
  if (incoming.storageType === 's3' && runId <= maxRunId) {
    const fresh = await insertFreshS3(ctx.db, { taskId, runId, name, contentType: incoming.contentType, details: incoming.details, expires: incoming.expires });
    if (fresh) return s3Answer(fresh);
  }
  if (!(await loadTask(ctx.db, taskId))) throw new ApiError('InputError', `Task ${taskId} not found`, { taskId });

  return withLockedTask(ctx, taskId, async (trx, t, emit) => {
    checkRun(ctx, t, runId);
    if (incoming.expires.getTime() > new Date(t.task.expires).getTime()) {
      throw new ApiError(
        'InputError',
        `Artifact expires ${incoming.expires.toISOString()}, after its task (${new Date(t.task.expires).toISOString()}); artifacts may not outlive their task`,
        { expires: body.expires, taskExpires: new Date(t.task.expires).toISOString() },
      );
    }
    const row = await upsert(trx, taskId, runId, name, incoming);
    if (row.storage_type !== 's3') {
      emit(artifactCreatedMessage(t, row));
      return { storageType: row.storage_type };
    }
    return s3Answer(row);
  });
}
