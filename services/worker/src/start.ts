// The generic worker: the worker SDK's claim loop with the command-running handler.
import { createWorker, type Logger, type Worker } from '@conveyor/worker';
import type { WorkerConfig } from './config.js';
import { genericHandler } from './handler.js';
import { Spawner } from './spawner.js';

export function startGenericWorker(config: WorkerConfig, log?: Logger): Worker {
  const spawner = new Spawner(config.spawnHelpers);
  const worker = createWorker({
    rootUrl: config.rootUrl,
    credentials: { clientId: config.clientId, accessToken: config.accessToken },
    taskQueueId: config.taskQueueId,
    workerGroup: config.workerGroup,
    workerId: config.workerId,
    capacity: config.capacity,
    shutdownGraceMs: config.shutdownGraceMs,
    handler: genericHandler(config, spawner),
    log,
  });
  return {
    get running() {
      return worker.running;
    },
    stopped: worker.stopped,
    stop: async (opts) => {
      await worker.stop(opts);
      await spawner.stop();
    },
  };
}
