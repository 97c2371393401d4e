// Helpers for the artifact tests: a claimed run with its worker's client, and raw HTTP for the
// signed upload and download URLs (which taskcluster-client does not call itself).
import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import http from 'node:http';
import { Readable } from 'node:stream';
import taskcluster from 'taskcluster-client';
import type { TestQueue } from './service.js';
import { slugid, taskDef, uniqueQueue } from './tasks.js';

export interface ClaimedRun {
  taskId: string;
  runId: number;
  /** taskcluster-client Queue with the claim's temporary credentials */
  worker: any;
}

/** A task created and claimed on any queue service (in this process or not). */
export async function claimedRunOn(
  rootUrl: string,
  credentials: { clientId: string; accessToken: string },
  overrides: Record<string, unknown> = {},
): Promise<ClaimedRun & { queue: any }> {
  const queue = new taskcluster.Queue({ rootUrl, credentials, retries: 0 });
  const taskQueueId = uniqueQueue();
  const taskId = slugid();
  await queue.createTask(taskId, taskDef({ taskQueueId, ...overrides }));
  const { tasks } = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
  if (tasks.length !== 1) throw new Error(`claimWork returned ${tasks.length} tasks`);
  return { queue, taskId, runId: tasks[0].runId, worker: new taskcluster.Queue({ rootUrl, credentials: tasks[0].credentials, retries: 0 }) };
}

export function claimedRun(q: TestQueue, overrides: Record<string, unknown> = {}): Promise<ClaimedRun> {
  return claimedRunOn(q.rootUrl, q.credentials, overrides);
}

/** For assert.rejects: a taskcluster-client error with this status (and code, and message). */
export const rejectsWith = (status: number, code?: string, message?: RegExp) => (err: any) => {
  assert.equal(err.statusCode, status, err.message);
  if (code) assert.equal(err.code, code);
  if (message) assert.match(err.message, message);
  return true;
};

export const inOneHour = (): string => taskcluster.fromNowJSON('1 hour');

/** Deterministic pseudo-random bytes (AES-CTR keystream), a block at a time, never the whole blob in memory. */
export function* pattern(size: number, seed = 1, block = 64 * 1024): Generator<Buffer> {
  const key = createHash('sha256').update(`pattern ${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(block);
  for (let done = 0; done < size; ) {
    const n = Math.min(block, size - done);
    done += n;
    yield cipher.update(zeros.subarray(0, n));
  }
}

export function sha256Of(chunks: Iterable<Buffer>): string {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** the body, unless `hash` was asked for */
  body: Buffer;
  /** sha256 of the body and its length, when the body was hashed instead of kept */
  sha256?: string;
  length: number;
}

/**
 * One HTTP request with a streamed body; the response body is kept, or only hashed when `hash`
 * is set (for large downloads).
 */
export function httpRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string | number>; body?: Iterable<Buffer> | Buffer | string; hash?: boolean } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      const h = createHash('sha256');
      const parts: Buffer[] = [];
      let length = 0;
      res.on('data', (d: Buffer) => {
        length += d.length;
        if (opts.hash) h.update(d);
        else parts.push(d);
      });
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts), length, ...(opts.hash ? { sha256: h.digest('hex') } : {}) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    const body = opts.body;
    if (body === undefined) req.end();
    else if (typeof body === 'string' || Buffer.isBuffer(body)) req.end(body);
    else Readable.from(body).pipe(req);
  });
}

export function json(r: HttpResult): any {
  return JSON.parse(r.body.toString('utf8'));
}
