// The shapes a worker author deals with: options, the per-task context, the result.
import type { Credentials, QueueClient } from '@conveyor/client';
import type { LiveLog, LiveLogOptions } from './live-log.js';
import type { UploadBody } from './artifacts.js';

/** pino-compatible; the SDK logs a little (claim errors, reclaim 409s, shutdown). */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Reasons a worker may give to reportException (Taskcluster's list). */
export type ExceptionReason =
  | 'malformed-payload'
  | 'resource-unavailable'
  | 'internal-error'
  | 'superseded'
  | 'intermittent-task'
  | 'worker-shutdown';

export type TaskResult =
  | { status: 'completed' }
  | { status: 'failed' }
  | { status: 'exception'; reason: ExceptionReason };

export const completed = (): TaskResult => ({ status: 'completed' });
export const failed = (): TaskResult => ({ status: 'failed' });
export const exception = (reason: ExceptionReason): TaskResult => ({ status: 'exception', reason });

/**
 * Why a handler's signal aborted. `resolved`: reclaim answered 409 (cancelled, deadline exceeded,
 * claim expired) — nothing is reported. `claim-lost`: the claim could not be renewed before
 * takenUntil. `worker-shutdown`: the grace period of stop() ran out; the run is reported
 * exception/worker-shutdown so the queue retries it.
 */
export class TaskAborted extends Error {
  constructor(
    readonly why: 'resolved' | 'claim-lost' | 'worker-shutdown',
    message: string,
  ) {
    super(message);
    this.name = 'TaskAborted';
  }
}

export interface TaskContext {
  taskId: string;
  runId: number;
  /** The task definition, as claimWork returned it. */
  task: Record<string, any>;
  /** Aborts when the run must stop (see TaskAborted in `signal.reason`). */
  signal: AbortSignal;
  /** The current claim; both change on every reclaim. */
  readonly takenUntil: Date;
  readonly credentials: Credentials;
  /** A queue client holding the run's current temporary credentials. */
  queue(): QueueClient;
  /** createArtifact (s3) then PUT the bytes to its putUrl. `expires` defaults to the task's. */
  uploadArtifact(name: string, body: UploadBody, contentType: string, opts?: { expires?: Date }): Promise<void>;
  /** A log artifact that grows while the task runs (default name public/logs/live.log). */
  liveLog(opts?: LiveLogOptions): LiveLog;
}

export type TaskHandler = (task: TaskContext) => Promise<TaskResult | void>;

export interface WorkerOptions {
  rootUrl: string;
  /** Needs queue:claim-work:<taskQueueId> and queue:worker-id:<workerGroup>/<workerId>. */
  credentials: Credentials;
  taskQueueId: string;
  workerGroup: string;
  workerId: string;
  /** Tasks run at once. */
  capacity: number;
  handler: TaskHandler;
  /** stop(): time running tasks get to finish before they are aborted and retried (default 30 s). */
  shutdownGraceMs?: number;
  /** stop(): time an aborted handler gets to clean up after the grace period (default 10 s). */
  cleanupMs?: number;
  /** Reclaim once this fraction of the time left until takenUntil has passed (default 1/3). */
  reclaimFraction?: number;
  log?: Logger;
  /** Called once per run after its resolution was reported (or skipped: `reported: false`). */
  onRunDone?(info: RunOutcome): void;
}

export interface RunOutcome {
  taskId: string;
  runId: number;
  result: TaskResult | undefined;
  aborted?: TaskAborted;
  reported: boolean;
}
