// @conveyor/generic-worker: a worker that runs each task's payload.command (README, "Generic worker").
export { loadWorkerConfig, workerConfigKeys, WorkerConfigError, type WorkerConfig } from './config.js';
export { checkPayload, payloadSchema, type GenericPayload } from './payload.js';
export { genericHandler } from './handler.js';
export { startGenericWorker } from './start.js';
export { workerCommand } from './command.js';
