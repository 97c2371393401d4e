// A client for the scheduler API (the CLI and tests use it): Hawk-signed like the queue client.
import { authorizationHeader, QueueError, type Credentials } from '@conveyor/client';
import type { Pipeline } from './pipeline.js';
import type { PipelineStatus } from './status.js';

export class SchedulerClient {
  constructor(
    /** Base URL, e.g. http://localhost:8081/api/scheduler/v1 */
    readonly url: string,
    readonly credentials?: Credentials,
  ) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = `${this.url.replace(/\/+$/, '')}${path}`;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.credentials?.clientId) headers.authorization = authorizationHeader(url, method, this.credentials);
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    const parsed = text && (res.headers.get('content-type') ?? '').startsWith('application/json') ? JSON.parse(text) : text;
    if (res.status >= 400) {
      throw new QueueError(parsed?.message ?? `HTTP ${res.status}`, res.status, parsed?.code ?? 'UnknownError', parsed);
    }
    return parsed as T;
  }

  submit(pipelineId: string, pipeline: Pipeline | unknown): Promise<PipelineStatus> {
    return this.call('PUT', `/pipeline/${encodeURIComponent(pipelineId)}`, pipeline);
  }
  status(pipelineId: string): Promise<PipelineStatus> {
    return this.call('GET', `/pipeline/${encodeURIComponent(pipelineId)}`);
  }
  list(): Promise<{ pipelines: Array<Omit<PipelineStatus, 'stages' | 'submittedBy'> & { stage: number }> }> {
    return this.call('GET', '/pipelines');
  }
}
