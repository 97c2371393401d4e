// The generic worker's configuration: environment variables, validated at start, every problem
// listed at once. Credentials use Taskcluster's variable names, falling back to the queue's root
// client (ROOT_CLIENT_ID / ROOT_ACCESS_TOKEN) so one environment can start the whole stack.
import { hostname } from 'node:os';
import { tmpdir } from 'node:os';

export interface WorkerConfig {
  rootUrl: string;
  clientId: string;
  accessToken: string;
  taskQueueId: string;
  workerGroup: string;
  workerId: string;
  capacity: number;
  shutdownGraceMs: number;
  liveLogIntervalMs: number;
  workDir: string;
  defaultMaxRunTimeSec: number;
  spawnHelpers: number;
}

interface Key {
  env: string[];
  doc: string;
  default?: string | (() => string);
}

export const workerConfigKeys: Record<keyof WorkerConfig, Key> = {
  rootUrl: { env: ['TASKCLUSTER_ROOT_URL', 'ROOT_URL'], doc: 'Root URL of the queue', default: 'http://localhost:8080' },
  clientId: { env: ['TASKCLUSTER_CLIENT_ID', 'ROOT_CLIENT_ID'], doc: 'Client id; needs queue:claim-work:<taskQueueId> and queue:worker-id:<group>/<id>', default: 'root' },
  accessToken: { env: ['TASKCLUSTER_ACCESS_TOKEN', 'ROOT_ACCESS_TOKEN'], doc: 'Access token of that client' },
  taskQueueId: { env: ['WORKER_TASK_QUEUE_ID'], doc: 'Task queue to claim from', default: 'local/generic' },
  workerGroup: { env: ['WORKER_GROUP'], doc: 'Worker group (1-38 of a-z A-Z 0-9 - _)', default: 'local' },
  workerId: {
    env: ['WORKER_ID'], doc: 'Worker id (1-38 of a-z A-Z 0-9 - _); default from the host name and pid',
    default: () => `${hostname().replace(/[^a-zA-Z0-9_-]/g, '-').slice(0, 28)}-${process.pid}`.slice(0, 38),
  },
  capacity: { env: ['WORKER_CAPACITY'], doc: 'Tasks run at once', default: '4' },
  shutdownGraceMs: { env: ['WORKER_SHUTDOWN_GRACE_MS'], doc: 'On SIGTERM, time running tasks get to finish before they are handed back (worker-shutdown)', default: '30000' },
  liveLogIntervalMs: { env: ['WORKER_LIVE_LOG_INTERVAL_MS'], doc: 'Least time between two uploads of public/logs/live.log while a task runs', default: '1000' },
  workDir: { env: ['WORKER_WORK_DIR'], doc: 'Where task directories are made (each removed after its task)', default: () => tmpdir() },
  defaultMaxRunTimeSec: { env: ['WORKER_DEFAULT_MAX_RUN_TIME'], doc: 'maxRunTime (seconds) of a payload that gives none', default: '3600' },
  spawnHelpers: { env: ['WORKER_SPAWN_HELPERS'], doc: 'Helper processes that start task processes (starting one blocks its helper for milliseconds)', default: '2' },
};

const identifier = /^[a-zA-Z0-9_-]{1,38}$/;
const taskQueue = /^[a-zA-Z0-9_-]{1,38}\/[a-z]([-a-z0-9]{0,36}[a-z0-9])?$/;
const numeric = new Set<keyof WorkerConfig>(['capacity', 'shutdownGraceMs', 'liveLogIntervalMs', 'defaultMaxRunTimeSec', 'spawnHelpers']);

export class WorkerConfigError extends Error {}

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<WorkerConfig> = {}): WorkerConfig {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, key] of Object.entries(workerConfigKeys) as [keyof WorkerConfig, Key][]) {
    if (overrides[name] !== undefined) {
      out[name] = overrides[name];
      continue;
    }
    const raw = key.env.map((e) => env[e]).find((v) => v !== undefined && v !== '') ?? (typeof key.default === 'function' ? key.default() : key.default);
    if (raw === undefined) {
      problems.push(`${key.env.join(' or ')}: required (${key.doc})`);
      continue;
    }
    if (numeric.has(name)) {
      const n = Number(raw);
      if (!Number.isInteger(n) || n < (name === 'capacity' || name === 'spawnHelpers' ? 1 : 0)) problems.push(`${key.env[0]}=${JSON.stringify(raw)}: must be a whole number`);
      out[name] = n;
    } else {
      out[name] = raw;
    }
  }
  const c = out as unknown as WorkerConfig;
  if (c.workerGroup && !identifier.test(c.workerGroup)) problems.push(`WORKER_GROUP=${JSON.stringify(c.workerGroup)}: 1-38 of a-z A-Z 0-9 - _`);
  if (c.workerId && !identifier.test(c.workerId)) problems.push(`WORKER_ID=${JSON.stringify(c.workerId)}: 1-38 of a-z A-Z 0-9 - _`);
  if (c.taskQueueId && !taskQueue.test(c.taskQueueId)) problems.push(`WORKER_TASK_QUEUE_ID=${JSON.stringify(c.taskQueueId)}: <provisionerId>/<workerType>`);
  if (problems.length > 0) throw new WorkerConfigError(`invalid generic worker configuration:\n  ${problems.join('\n  ')}`);
  return c;
}
