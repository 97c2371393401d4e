// @conveyor/worker: write a Conveyor (or Taskcluster) worker as one async handler.
export { createWorker, stopOnSignals, type Worker } from './worker.js';
export { uploadArtifact, type UploadBody } from './artifacts.js';
export { LiveLog, type LiveLogOptions } from './live-log.js';
export {
  TaskAborted,
  completed,
  exception,
  failed,
  type ExceptionReason,
  type Logger,
  type RunOutcome,
  type TaskContext,
  type TaskHandler,
  type TaskResult,
  type WorkerOptions,
} from './types.js';
