// `conveyor worker`: the generic worker as its own process, configured by environment (README,
// "Generic worker"). SIGTERM/SIGINT stop it through the conveyor command's drain.
import type { Logger } from '@conveyor/worker';
import { loadWorkerConfig, WorkerConfigError } from './config.js';
import { startGenericWorker } from './start.js';

export async function workerCommand(_queueConfig: unknown, log: Logger & { child?(b: object): Logger }): Promise<() => Promise<void>> {
  let config;
  try {
    config = loadWorkerConfig();
  } catch (err) {
    if (!(err instanceof WorkerConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  const worker = startGenericWorker(config, log.child?.({ service: 'generic-worker' }) ?? log);
  process.stdout.write(
    `Conveyor generic worker is up: ${config.workerGroup}/${config.workerId} claims up to ${config.capacity} tasks from ${config.taskQueueId} on ${config.rootUrl}\n`,
  );
  return () => worker.stop();
}
