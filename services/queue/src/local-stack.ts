// What `start --local` (npm start) runs beside the queue so one command gives a whole system to
// try: a generic worker on local/generic and the pipeline scheduler, both talking to this queue
// with the root client. START_WORKER=false / START_SCHEDULER=false leave one out.
import type pino from 'pino';
import { loadWorkerConfig, startGenericWorker, WorkerConfigError } from '@conveyor/generic-worker';
import { loadSchedulerEnv, startScheduler } from '@conveyor/scheduler';
import type { Config } from './config.js';

export interface LocalStack {
  lines: string[];
  stop(): Promise<void>;
}

export async function startLocalStack(config: Config, log: pino.Logger, queueUrl: string): Promise<LocalStack> {
  const credentials = { clientId: config.rootClientId, accessToken: config.rootAccessToken! };
  const lines: string[] = [];
  const stops: Array<() => Promise<void>> = [];

  lines.push('  built-in:      tasks on built-in/succeed complete, on built-in/fail fail, with no worker');
  if (config.startWorker) {
    let wc;
    try {
      // WORKER_* variables apply; the queue and credentials are this process's
      wc = loadWorkerConfig(process.env, { rootUrl: queueUrl, clientId: credentials.clientId, accessToken: credentials.accessToken, workerId: process.env.WORKER_ID || 'local-1' });
    } catch (err) {
      if (err instanceof WorkerConfigError) throw new Error(err.message);
      throw err;
    }
    const worker = startGenericWorker(wc, log.child({ service: 'generic-worker' }));
    stops.push(() => worker.stop());
    lines.push(`  worker:        ${wc.workerGroup}/${wc.workerId} runs up to ${wc.capacity} tasks at once from ${wc.taskQueueId} (payload.command; log in public/logs/live.log)`);
  }

  if (config.startScheduler) {
    const env = loadSchedulerEnv();
    const scheduler = await startScheduler({
      queueConfig: config,
      rootUrl: queueUrl,
      credentials,
      schedulerId: env.schedulerId,
      port: env.port,
      reconcileIntervalMs: env.reconcileIntervalMs,
      log: log.child({ service: 'scheduler' }),
    });
    stops.unshift(() => scheduler.stop());
    lines.push(`  scheduler:     ${scheduler.url}/  (pipelines; schedulerId ${env.schedulerId})`);
    lines.push(`  try:           npm run conveyor -- pipeline submit examples/pipeline.yaml --wait`);
  }

  return {
    lines,
    async stop() {
      // the scheduler first (it submits work), then the worker hands back what it still runs
      for (const stop of stops) await stop();
    },
  };
}
