// Artifact upload as Taskcluster workers do it: createArtifact with storageType s3, then PUT the
// bytes to the returned putUrl (on Conveyor, a signed URL on the queue itself).
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { QueueClient } from '@conveyor/client';

/** Bytes, a file (optionally its first `size` bytes), or a stream of unknown length. */
export type UploadBody = string | Uint8Array | { file: string; size?: number } | Readable;

export interface UploadTarget {
  queue: QueueClient;
  taskId: string;
  runId: number;
  name: string;
  contentType: string;
  expires: Date;
}

interface PutUrl {
  putUrl: string;
  validUntil: number;
  contentType: string;
}

/**
 * putUrls handed out for a run's artifacts, reused while valid: a growing log is re-uploaded often.
 * An entry may still be on its way (prepareArtifact): uploads wait for it rather than ask again.
 */
export type PutUrlCache = Map<string, Promise<PutUrl | undefined>>;

const reuseMarginMs = 60_000;

async function createForUpload(t: UploadTarget): Promise<PutUrl> {
  const created = await t.queue.createArtifact(t.taskId, t.runId, t.name, {
    storageType: 's3',
    contentType: t.contentType,
    expires: t.expires.toISOString(),
  });
  if (!created?.putUrl) throw new Error(`createArtifact ${t.name}: no putUrl in the answer`);
  return { putUrl: created.putUrl, validUntil: Date.parse(created.expires), contentType: t.contentType };
}

/**
 * createArtifact now, for an upload that will come (a live log): the upload then is a PUT only,
 * one round trip less at the end of the task. If it fails, the upload creates the artifact itself.
 */
export function prepareArtifact(t: UploadTarget, cache: PutUrlCache): void {
  if (cache.has(t.name)) return;
  cache.set(t.name, createForUpload(t).catch(() => undefined));
}

export async function uploadArtifact(t: UploadTarget, body: UploadBody, cache?: PutUrlCache): Promise<void> {
  const known = await cache?.get(t.name);
  if (known && known.contentType === t.contentType && known.validUntil - reuseMarginMs > Date.now() && !(body instanceof Readable)) {
    try {
      return await put(known.putUrl, t.contentType, body, t.queue.options.agent);
    } catch {
      // expired or refused: ask for a fresh one below
      cache!.delete(t.name);
    }
  }
  const created = await createForUpload(t);
  cache?.set(t.name, Promise.resolve(created));
  await put(created.putUrl, t.contentType, body, t.queue.options.agent);
}

async function put(url: string, contentType: string, body: UploadBody, agent?: http.Agent): Promise<void> {
  const headers: Record<string, string | number> = { 'content-type': contentType };
  // bytes in memory go out with end(); files and streams through a pipeline
  let bytes: Uint8Array | undefined;
  let source: Readable | undefined;
  if (typeof body === 'string' || body instanceof Uint8Array) {
    bytes = typeof body === 'string' ? Buffer.from(body) : body;
    headers['content-length'] = bytes.byteLength;
  } else if (body instanceof Readable) {
    source = body;
  } else {
    const size = body.size ?? (await stat(body.file)).size;
    headers['content-length'] = size;
    // an empty range would make createReadStream read the whole file
    source = size === 0 ? Readable.from([]) : createReadStream(body.file, { start: 0, end: size - 1 });
  }
  const u = new URL(url);
  const transport = u.protocol === 'https:' ? https : http;
  if (u.protocol === 'https:') agent = undefined;
  await new Promise<void>((resolve, reject) => {
    const req = transport.request(u, { method: 'PUT', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if ((res.statusCode ?? 0) < 300) resolve();
        else reject(new Error(`PUT ${u.pathname}: HTTP ${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 500)}`));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (source) pipeline(source, req).catch(reject);
    else req.end(bytes);
  });
}
