// The two routes that move blob bytes, outside the API table because the signed URL is their whole
// authorization: PUT <putUrl> streams the body into PostgreSQL; GET <download URL> streams it back
// with the stored content type, honouring Range. Neither holds more than a few chunks in memory.
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Ctx } from '../context.js';
import { ApiError } from '../http/errors.js';
import { BlobReader } from './blob-reader.js';
import { TooLarge, writeChunks, type Written } from './chunks.js';
import { completeUpload, type UploadTarget } from './complete.js';
import { parseRange } from './range.js';
import { loadArtifact, type BlobDetails } from './rows.js';
import { downloadPath, uploadPath, verifyToken } from './signing.js';

/** An upload that has not completed after this long is garbage (its process died, or its client). */
const unfinishedUploadTtlMs = 24 * 3600 * 1000;
/** Connections for reading blobs; each is held for one chunk's COPY (a few ms per MiB), so a few serve many downloads. */
const readPoolSize = 4;

function tokenOf(req: FastifyRequest): string {
  return (req.params as Record<string, string>)['*'] ?? '';
}

/** An error before the body was read: close the connection rather than read gigabytes to discard them. */
function refuse(reply: FastifyReply, err: ApiError): never {
  reply.header('connection', 'close');
  throw err;
}

const foreignKeyViolation = '23503';

async function upload(ctx: Ctx, req: FastifyRequest, reply: FastifyReply) {
  const grant = (() => {
    try {
      return verifyToken(ctx, tokenOf(req), 'put');
    } catch (err) {
      return refuse(reply, err as ApiError);
    }
  })();
  const { taskId, runId, name } = grant;
  const max = ctx.config.maxArtifactBytes;
  const header = req.headers['content-length'];
  const httpLength = header !== undefined ? Number(header) : undefined;
  if (httpLength !== undefined && httpLength > max) {
    refuse(reply, new ApiError('InputTooLarge', `Content-Length ${httpLength} exceeds the largest artifact accepted (${max} bytes)`, { maxArtifactBytes: max }));
  }
  // What the upload goes to must exist, be unexpired and agree with the Content-Length declared.
  // A body of one chunk at most is read first and these checks run on the row the completing
  // transaction locks anyway (one round trip less for every log upload); a larger one is checked
  // before its body is read, so a refused upload is not read at all.
  const checkTarget: (row: UploadTarget | undefined) => asserts row is UploadTarget = (row) => {
    if (!row || row.storage_type !== 's3') {
      refuse(reply, new ApiError('ResourceNotFound', `Artifact ${name} of run ${runId} of task ${taskId} does not exist (any more); create it again`));
    }
    if (new Date(row.expires).getTime() <= ctx.clock.now().getTime()) {
      refuse(reply, new ApiError('ResourceExpired', `Artifact ${name} of run ${runId} of task ${taskId} expired at ${new Date(row.expires).toISOString()}`));
    }
    const declared = (row.details as BlobDetails).contentLength;
    if (declared !== undefined && httpLength !== undefined && declared !== httpLength) {
      refuse(reply, new ApiError('InputError', `Content-Length is ${httpLength}, but createArtifact declared contentLength ${declared}`));
    }
  };
  const oneChunk = httpLength !== undefined && httpLength <= ctx.config.artifactChunkBytes;
  let declared: number | undefined;
  if (!oneChunk) {
    const row = await loadArtifact(ctx.db, taskId, runId, name);
    checkTarget(row);
    declared = (row.details as BlobDetails).contentLength;
  }

  const uploadId = randomUUID();
  const uploadRow = {
    upload_id: uploadId, task_id: taskId, run_id: runId, name,
    chunk_bytes: ctx.config.artifactChunkBytes,
    content_encoding: typeof req.headers['content-encoding'] === 'string' ? req.headers['content-encoding'] : null,
    expires: new Date(ctx.clock.now().getTime() + unfinishedUploadTtlMs),
  };
  let rowStored = false;
  const storeRow = async () => {
    await ctx.db.insertInto('artifact_uploads').values(uploadRow).execute();
    rowStored = true;
  };
  let written: Written;
  try {
    written = await writeChunks(ctx.db, uploadId, ctx.config.artifactChunkBytes, req.raw, max, storeRow, httpLength);
    // a body cut short must never become the artifact, however the stream ended
    if (!req.raw.complete || (httpLength !== undefined && written.size !== httpLength)) {
      throw new ApiError('InputError', `The upload ended after ${written.size} bytes, before its Content-Length (${httpLength}); send it again`);
    }
    if (declared !== undefined && written.size !== declared) {
      throw new ApiError('InputError', `Received ${written.size} bytes, but createArtifact declared contentLength ${declared}`);
    }
  } catch (err) {
    if (rowStored) {
      await ctx.db.deleteFrom('artifact_uploads').where('upload_id', '=', uploadId).execute().catch((e: unknown) => {
        ctx.log.warn({ err: e, uploadId }, 'could not delete a failed upload; the artifact loop will');
      });
    }
    if (err instanceof TooLarge) {
      refuse(reply, new ApiError('InputTooLarge', `The upload exceeds the largest artifact accepted (${max} bytes)`, { maxArtifactBytes: max }));
    }
    if ((err as { code?: string }).code === 'ECONNRESET' && !req.raw.complete) {
      // the client went away: nobody hears the answer, and it is not the service's fault
      ctx.log.info({ uploadId, taskId, runId, name }, 'artifact upload aborted by the client');
      throw new ApiError('InputError', 'The upload was aborted before it completed; send it again');
    }
    if ((err as { code?: string }).code === foreignKeyViolation) {
      throw new ApiError('ResourceExpired', `Artifact ${name} of run ${runId} of task ${taskId} expired during the upload`);
    }
    throw err;
  }
  await completeUpload(ctx, { grant, uploadRow: rowStored ? undefined : uploadRow, uploadId, written, ...(oneChunk ? { checkTarget } : {}) });
  return reply.code(200).header('etag', `"${written.sha256}"`).send();
}

async function download(ctx: Ctx, reader: BlobReader, req: FastifyRequest, reply: FastifyReply) {
  const grant = verifyToken(ctx, tokenOf(req), 'get');
  const blob = await ctx.db
    .selectFrom('artifact_uploads as u')
    .innerJoin('artifacts as a', (j) => j.onRef('a.task_id', '=', 'u.task_id').onRef('a.run_id', '=', 'u.run_id').onRef('a.name', '=', 'u.name'))
    .select(['u.chunk_bytes', 'u.size', 'u.sha256', 'u.content_encoding', 'a.content_type', 'a.expires'])
    .where('u.upload_id', '=', grant.uploadId)
    .where('u.task_id', '=', grant.taskId)
    .where('u.run_id', '=', grant.runId)
    .where('u.name', '=', grant.name)
    .where('u.completed', 'is not', null)
    .executeTakeFirst();
  if (!blob) {
    throw new ApiError('ResourceNotFound', `The content behind this URL is gone (the artifact expired, or a newer upload replaced it); call getArtifact again`);
  }
  if (new Date(blob.expires).getTime() <= ctx.clock.now().getTime()) {
    throw new ApiError('ResourceExpired', `Artifact ${grant.name} expired at ${new Date(blob.expires).toISOString()}`);
  }
  const size = Number(blob.size);
  const etag = `"${blob.sha256}"`;
  const headers: Record<string, string> = {
    'content-type': blob.content_type,
    'accept-ranges': 'bytes',
    etag,
  };
  if (blob.content_encoding) headers['content-encoding'] = blob.content_encoding;

  const ifRange = req.headers['if-range'];
  const range = ifRange && ifRange !== etag ? { kind: 'all' as const } : parseRange(req.headers.range, size);
  if (range.kind === 'unsatisfiable') {
    return reply
      .code(416)
      .header('content-range', `bytes */${size}`)
      .send({ code: 'RangeNotSatisfiable', message: `The range ${req.headers.range} lies outside the artifact's ${size} bytes` });
  }
  const [status, start, end] = range.kind === 'partial' ? [206, range.start, range.end] : [200, 0, size - 1];
  if (status === 206) headers['content-range'] = `bytes ${start}-${end}/${size}`;
  headers['content-length'] = String(end - start + 1);

  if (req.method === 'HEAD') {
    reply.hijack();
    reply.raw.writeHead(status, headers);
    reply.raw.end();
    return;
  }
  // one chunk queued beyond the one being written: the socket's pace sets the reading pace
  const body = Readable.from(reader.read(grant.uploadId, blob.chunk_bytes, start, end), { objectMode: false, highWaterMark: 1 });
  return reply.code(status).headers(headers).send(body);
}

export function transferRoutes(ctx: Ctx) {
  return (app: FastifyInstance): void => {
    void app.register(async (scope) => {
      const reader = new BlobReader(ctx.config.databaseUrl!, readPoolSize);
      scope.addHook('onClose', () => reader.close());
      // bodies are streamed by the handler, whatever their content type, and never parsed
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', (_req, _payload, done) => done(null));
      scope.put(`${uploadPath}/*`, (req, reply) => upload(ctx, req, reply));
      scope.route({ method: ['GET', 'HEAD'], url: `${downloadPath}/*`, handler: (req, reply) => download(ctx, reader, req, reply) });
    });
  };
}
