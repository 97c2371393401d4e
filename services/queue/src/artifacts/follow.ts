// Reading an artifact for getArtifact and artifact-content: follow links within the run, asking for
// `queue:get-artifact:<name>` of every name on the way (a link must not reveal what the caller may
// not read), and say where the content is.
import type { Ctx } from '../context.js';
import { respond, type ApiRequest } from '../http/endpoint.js';
import { ApiError } from '../http/errors.js';
import { loadTask } from '../tasks/status.js';
import { loadArtifact, type ArtifactRow, type BlobDetails } from './rows.js';
import { getUrl, getUrlLifetimeMs } from './signing.js';

/** Longest link chain followed; longer ones are refused as if they were cycles. */
const maxLinks = 100;

/** The run a request is about: the URL's runId, or the task's latest run. 404 if either is missing. */
export async function runOf(ctx: Ctx, taskId: string, runId: string | undefined): Promise<number> {
  const t = await loadTask(ctx.db, taskId);
  if (!t) throw new ApiError('ResourceNotFound', `Task ${taskId} not found`, { taskId });
  if (runId === undefined) {
    if (t.runs.length === 0) throw new ApiError('ResourceNotFound', `Task ${taskId} has no runs yet`, { taskId });
    return t.runs.length - 1;
  }
  const n = Number(runId);
  if (!t.runs[n]) throw new ApiError('ResourceNotFound', `Task ${taskId} has no run ${runId}`, { taskId, runId: n });
  return n;
}

/** The artifact a name resolves to after following links, authorizing every name on the way. */
export async function followLinks(req: ApiRequest, taskId: string, runId: number, name: string): Promise<ArtifactRow> {
  const { ctx } = req;
  const names = [name];
  req.authorize({ names });
  for (;;) {
    const current = names[names.length - 1]!;
    const row = await loadArtifact(ctx.db, taskId, runId, current);
    const via = names.length > 1 ? ` (linked from ${names.slice(0, -1).join(' → ')})` : '';
    if (!row) throw new ApiError('ResourceNotFound', `Artifact ${current} of run ${runId} of task ${taskId} not found${via}`, { taskId, runId, name: current });
    if (new Date(row.expires).getTime() <= ctx.clock.now().getTime()) {
      throw new ApiError('ResourceExpired', `Artifact ${current} of run ${runId} of task ${taskId} expired at ${new Date(row.expires).toISOString()}${via}`);
    }
    if (!row.present) {
      throw new ApiError('ResourceNotFound', `Artifact ${current} of run ${runId} of task ${taskId} has no content yet: its upload has not completed${via}`, {
        taskId, runId, name: current,
      });
    }
    if (row.storage_type !== 'link') return row;
    const target = (row.details as { artifact: string }).artifact;
    if (names.includes(target) || names.length > maxLinks) {
      throw new ApiError('InputError', `Artifact links form a cycle or a chain longer than ${maxLinks}: ${[...names, target].join(' → ')}`, {
        names: [...names, target],
      });
    }
    names.push(target);
    req.authorize({ names });
  }
}

/** Where the content of a resolved (non-link) artifact is. */
function contentOf(ctx: Ctx, row: ArtifactRow): { storageType: string; url: string } | { storageType: 'error'; reason: string; message: string } {
  switch (row.storage_type) {
    case 'reference':
      return { storageType: 'reference', url: (row.details as { url: string }).url };
    case 'error': {
      const d = row.details as { reason: string; message: string };
      return { storageType: 'error', reason: d.reason, message: d.message };
    }
    case 's3': {
      const uploadId = (row.details as BlobDetails).uploadId!;
      const expires = new Date(Math.min(ctx.clock.now().getTime() + getUrlLifetimeMs, new Date(row.expires).getTime()));
      return { storageType: 's3', url: getUrl(ctx, { taskId: row.task_id, runId: row.run_id, name: row.name, uploadId, expires }) };
    }
    default:
      throw new Error(`artifact ${row.name} has unknown storage type ${row.storage_type}`);
  }
}

/** getArtifact: 303 to the content (the client resolves with the JSON body), 424 for an error artifact. */
export async function redirectToArtifact(req: ApiRequest, runId: string | undefined) {
  const { taskId, name } = req.params;
  // the caller must be able to read the name asked for before learning whether the task exists
  req.authorize({ names: [name] });
  const run = await runOf(req.ctx, taskId!, runId);
  const row = await followLinks(req, taskId!, run, name!);
  const content = contentOf(req.ctx, row);
  const headers: Record<string, string> = { 'x-taskcluster-artifact-storage-type': content.storageType };
  if (content.storageType === 'error') {
    const { reason, message } = content as { reason: string; message: string };
    return respond(424, { reason, message }, headers);
  }
  const { url } = content as { url: string };
  return respond(303, { storageType: content.storageType, url }, { ...headers, location: url });
}

/** artifact-content: the same answer as getArtifact, as a 200 body. */
export async function describeArtifact(req: ApiRequest, runId: string | undefined) {
  const { taskId, name } = req.params;
  // the caller must be able to read the name asked for before learning whether the task exists
  req.authorize({ names: [name] });
  const run = await runOf(req.ctx, taskId!, runId);
  return contentOf(req.ctx, await followLinks(req, taskId!, run, name!));
}
