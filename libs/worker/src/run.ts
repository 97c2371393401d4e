// One claimed run: keeps the claim alive (reclaim before takenUntil with the run's own temporary
// credentials), runs the handler, reports its result. A reclaim that answers 409 means the run was
// resolved elsewhere (cancel, deadline, claim expiry): the handler is aborted and nothing reported.
import { QueueClient, QueueError, type Credentials } from '@conveyor/client';
import { prepareArtifact, uploadArtifact, type PutUrlCache, type UploadBody, type UploadTarget } from './artifacts.js';
import { LiveLog, type LiveLogOptions } from './live-log.js';
import { TaskAborted, type Logger, type RunOutcome, type TaskContext, type TaskHandler, type TaskResult } from './types.js';

export interface Claim {
  status: { taskId: string };
  runId: number;
  takenUntil: string;
  task: Record<string, any>;
  credentials: Credentials;
}

export interface RunSettings {
  queue: QueueClient;
  handler: TaskHandler;
  reclaimFraction: number;
  log: Logger;
}

export class TaskRun {
  readonly taskId: string;
  readonly runId: number;
  private credentials: Credentials;
  private takenUntil: Date;
  private readonly abort = new AbortController();
  private reclaimTimer: NodeJS.Timeout | undefined;
  private settled = false;
  private readonly logs: LiveLog[] = [];
  private readonly putUrls: PutUrlCache = new Map();
  /** Resolves when the handler has returned or thrown. */
  handlerDone!: Promise<void>;
  /** Resolves when the run is over: result reported (or skipped). */
  done!: Promise<RunOutcome>;

  constructor(private readonly claim: Claim, private readonly s: RunSettings) {
    this.taskId = claim.status.taskId;
    this.runId = claim.runId;
    this.credentials = claim.credentials;
    this.takenUntil = new Date(claim.takenUntil);
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  private queue(): QueueClient {
    return this.s.queue.withCredentials(this.credentials);
  }

  start(): this {
    this.scheduleReclaim();
    let result: TaskResult | undefined;
    this.handlerDone = (async () => {
      try {
        result = (await this.s.handler(this.context())) ?? { status: 'completed' };
      } catch (err) {
        // A handler that throws has a bug or met the unexpected: that is the worker's failure,
        // not the task's, so it is internal-error (no automatic retry), never `failed`.
        if (!this.signal.aborted) this.s.log.error({ err, taskId: this.taskId, runId: this.runId }, 'task handler threw');
        result = { status: 'exception', reason: 'internal-error' };
      }
    })();
    this.done = this.handlerDone.then(async () => {
      for (const l of this.logs) {
        await l.close().catch((err) => this.s.log.warn({ err, taskId: this.taskId, artifact: l.name }, 'final log upload failed'));
      }
      this.settled = true;
      clearTimeout(this.reclaimTimer);
      const aborted = this.signal.aborted ? (this.signal.reason as TaskAborted) : undefined;
      // resolved elsewhere, or already reported worker-shutdown by stop()
      if (aborted) return { taskId: this.taskId, runId: this.runId, result, aborted, reported: aborted.why === 'worker-shutdown' };
      const reported = await this.report(result!);
      return { taskId: this.taskId, runId: this.runId, result, reported };
    });
    return this;
  }

  private context(): TaskContext {
    const run = this;
    return {
      taskId: this.taskId,
      runId: this.runId,
      task: this.claim.task,
      signal: this.signal,
      get takenUntil() {
        return run.takenUntil;
      },
      get credentials() {
        return run.credentials;
      },
      queue: () => this.queue(),
      uploadArtifact: (name: string, body: UploadBody, contentType: string, opts: { expires?: Date } = {}) =>
        this.upload(name, body, contentType, opts.expires),
      liveLog: (opts?: LiveLogOptions) => {
        const log = new LiveLog((name, body, contentType) => this.upload(name, body, contentType), opts);
        this.logs.push(log);
        // its artifact is created now, while the task runs, so its uploads are PUTs only
        prepareArtifact(this.uploadTarget(log.name, log.contentType), this.putUrls);
        return log;
      },
    };
  }

  private uploadTarget(name: string, contentType: string, expires?: Date): UploadTarget {
    return { queue: this.queue(), taskId: this.taskId, runId: this.runId, name, contentType, expires: expires ?? new Date(this.claim.task.expires) };
  }

  private upload(name: string, body: UploadBody, contentType: string, expires?: Date): Promise<void> {
    return uploadArtifact(this.uploadTarget(name, contentType, expires), body, this.putUrls);
  }

  private scheduleReclaim(delayMs?: number): void {
    if (this.settled) return;
    const left = this.takenUntil.getTime() - Date.now();
    const delay = delayMs ?? Math.max(0, left * this.s.reclaimFraction);
    this.reclaimTimer = setTimeout(() => void this.reclaim(), delay);
  }

  private async reclaim(): Promise<void> {
    if (this.settled) return;
    const left = this.takenUntil.getTime() - Date.now();
    try {
      const r = await this.queue().reclaimTask(this.taskId, this.runId, AbortSignal.timeout(Math.max(1, left)));
      this.credentials = r.credentials;
      this.takenUntil = new Date(r.takenUntil);
      this.scheduleReclaim();
    } catch (err) {
      if (this.settled) return;
      if (err instanceof QueueError && err.statusCode === 409) {
        this.s.log.info({ taskId: this.taskId, runId: this.runId, message: err.message }, 'reclaim refused: aborting the task');
        this.abort.abort(new TaskAborted('resolved', err.message));
        return;
      }
      const leftNow = this.takenUntil.getTime() - Date.now();
      if (leftNow <= 0) {
        this.s.log.warn({ err, taskId: this.taskId, runId: this.runId }, 'claim lost: could not reclaim before takenUntil');
        this.abort.abort(new TaskAborted('claim-lost', `could not reclaim before ${this.takenUntil.toISOString()}: ${String(err)}`));
        return;
      }
      this.s.log.warn({ err, taskId: this.taskId, runId: this.runId }, 'reclaim failed; trying again');
      this.scheduleReclaim(Math.min(5000, leftNow / 3));
    }
  }

  private async report(result: TaskResult): Promise<boolean> {
    const q = this.queue();
    try {
      if (result.status === 'completed') await q.reportCompleted(this.taskId, this.runId);
      else if (result.status === 'failed') await q.reportFailed(this.taskId, this.runId);
      else await q.reportException(this.taskId, this.runId, { reason: result.reason });
      return true;
    } catch (err) {
      // 409: resolved meanwhile (cancelled, deadline): the queue's answer stands
      this.s.log.warn({ err, taskId: this.taskId, runId: this.runId, result }, 'could not report the result');
      return false;
    }
  }

  /** Grace period over: abort the handler and let the queue retry the run elsewhere. */
  async shutdown(): Promise<void> {
    if (this.settled || this.signal.aborted) return;
    this.abort.abort(new TaskAborted('worker-shutdown', 'the worker is shutting down'));
    clearTimeout(this.reclaimTimer);
    try {
      await this.queue().reportException(this.taskId, this.runId, { reason: 'worker-shutdown' });
    } catch (err) {
      this.s.log.warn({ err, taskId: this.taskId, runId: this.runId }, 'could not report worker-shutdown');
    }
  }
}
