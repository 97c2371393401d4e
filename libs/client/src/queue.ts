// A thin client for the Queue v1 API over fetch: Hawk-signed like taskcluster-client, with the same
// retry policy (5xx and network errors, exponential backoff), plus what the worker SDK needs and
// taskcluster-client lacks: an AbortSignal per call and a keep-alive agent of the caller's.
import http from 'node:http';
import https from 'node:https';
import { authorizationHeader, type Credentials } from './hawk.js';
import { sleep } from './sleep.js';

export class QueueError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
    readonly code: string,
    readonly body: unknown,
  ) {
    super(message);
    this.name = 'QueueError';
  }
}

export interface QueueClientOptions {
  rootUrl: string;
  credentials?: Credentials;
  authorizedScopes?: string[];
  /** Attempts after the first for 5xx and network errors (default 5, as taskcluster-client). */
  retries?: number;
  /** Per attempt; claimWork long-polls for up to 20 s, so keep this above that (default 30 s). */
  timeoutMs?: number;
  /** Connection pool (e.g. a keep-alive agent the caller destroys when done); default: Node's global agent. */
  agent?: http.Agent;
}

export interface CallOptions {
  body?: unknown;
  query?: Record<string, string | number | undefined>;
  signal?: AbortSignal;
}

const enc = encodeURIComponent;

export class QueueClient {
  readonly rootUrl: string;

  constructor(readonly options: QueueClientOptions) {
    this.rootUrl = options.rootUrl.replace(/\/+$/, '');
  }

  /** The same client with other credentials (e.g. a task's temporary credentials). */
  withCredentials(credentials: Credentials): QueueClient {
    return new QueueClient({ ...this.options, credentials });
  }

  apiUrl(path: string): string {
    return `${this.rootUrl}/api/queue/v1${path}`;
  }

  async request<T = any>(method: string, path: string, opts: CallOptions = {}): Promise<T> {
    const query = Object.entries(opts.query ?? {}).filter(([, v]) => v !== undefined);
    const url = this.apiUrl(path) + (query.length ? `?${new URLSearchParams(query.map(([k, v]): [string, string] => [k, String(v)]))}` : '');
    const retries = this.options.retries ?? 5;
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string | number> = { accept: 'application/json' };
      if (this.options.credentials?.clientId) {
        headers.authorization = authorizationHeader(url, method, this.options.credentials, this.options.authorizedScopes);
      }
      if (payload) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = payload.byteLength;
      }
      let res: { status: number; contentType: string; text: string };
      try {
        res = await send(url, { method, headers, agent: this.options.agent }, this.options.timeoutMs ?? 30_000, opts.signal, payload);
      } catch (err) {
        if (opts.signal?.aborted || attempt >= retries) throw err;
        await sleep(backoff(attempt), opts.signal);
        continue;
      }
      const body = res.contentType.startsWith('application/json') && res.text ? JSON.parse(res.text) : res.text;
      if (res.status < 400) return (body === '' ? undefined : body) as T;
      if (res.status >= 500 && attempt < retries && !opts.signal?.aborted) {
        await sleep(backoff(attempt), opts.signal);
        continue;
      }
      const b = body as { code?: string; message?: string };
      throw new QueueError(b?.message ?? `${method} ${path}: HTTP ${res.status}`, res.status, b?.code ?? 'UnknownError', body);
    }
  }

  // Worker interface
  claimWork(taskQueueId: string, body: { workerGroup: string; workerId: string; tasks: number }, signal?: AbortSignal) {
    return this.request('POST', `/claim-work/${enc(taskQueueId)}`, { body, signal });
  }
  reclaimTask(taskId: string, runId: number, signal?: AbortSignal) {
    return this.request('POST', `/task/${enc(taskId)}/runs/${runId}/reclaim`, { signal });
  }
  reportCompleted(taskId: string, runId: number) {
    return this.request('POST', `/task/${enc(taskId)}/runs/${runId}/completed`);
  }
  reportFailed(taskId: string, runId: number) {
    return this.request('POST', `/task/${enc(taskId)}/runs/${runId}/failed`);
  }
  reportException(taskId: string, runId: number, body: { reason: string }) {
    return this.request('POST', `/task/${enc(taskId)}/runs/${runId}/exception`, { body });
  }
  createArtifact(taskId: string, runId: number, name: string, body: Record<string, unknown>) {
    return this.request('POST', `/task/${enc(taskId)}/runs/${runId}/artifacts/${enc(name)}`, { body });
  }

  // Tasks and groups
  createTask(taskId: string, definition: Record<string, unknown>) {
    return this.request('PUT', `/task/${enc(taskId)}`, { body: definition });
  }
  task(taskId: string) {
    return this.request('GET', `/task/${enc(taskId)}`);
  }
  status(taskId: string) {
    return this.request('GET', `/task/${enc(taskId)}/status`);
  }
  statuses(taskIds: string[], query: { continuationToken?: string; limit?: number } = {}) {
    return this.request('POST', '/tasks/status', { body: { taskIds }, query });
  }
  cancelTask(taskId: string) {
    return this.request('POST', `/task/${enc(taskId)}/cancel`);
  }
  sealTaskGroup(taskGroupId: string) {
    return this.request('POST', `/task-group/${enc(taskGroupId)}/seal`);
  }
  getTaskGroup(taskGroupId: string) {
    return this.request('GET', `/task-group/${enc(taskGroupId)}`);
  }
}

function backoff(attempt: number): number {
  return Math.min(30_000, 2 ** attempt * 100) * (0.75 + Math.random() * 0.5);
}

/**
 * One attempt. The time limit is a timer and the caller's signal a listener, both dropped when the
 * response has arrived: an AbortSignal.timeout per request (and AbortSignal.any to join it with the
 * caller's) costs a worker ~60 µs of CPU per request here.
 */
function send(
  url: string,
  opts: { method: string; headers: Record<string, string | number>; agent?: http.Agent },
  timeoutMs: number,
  signal: AbortSignal | undefined,
  payload?: Buffer,
): Promise<{ status: number; contentType: string; text: string }> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  const u = new URL(url);
  const transport = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(u, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        done();
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString() });
      });
      res.on('error', fail);
    });
    const timer = setTimeout(() => req.destroy(new Error(`${opts.method} ${u.pathname}: no answer within ${timeoutMs} ms`)), timeoutMs);
    // as AbortSignal.timeout's: the request, not its time limit, keeps the process alive
    timer.unref();
    const onAbort = () => req.destroy(abortError(signal!));
    signal?.addEventListener('abort', onAbort, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
    function fail(err: Error) {
      done();
      reject(err);
    }
    req.on('error', fail);
    req.end(payload);
  });
}

function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal.reason }), { name: 'AbortError' });
}
