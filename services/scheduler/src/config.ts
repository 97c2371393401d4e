// The scheduler's own settings (environment); the database, RabbitMQ and exchange prefix are the
// queue's (DATABASE_URL, AMQP_URL, EXCHANGE_PREFIX), read by the queue's configuration.
export interface SchedulerEnv {
  schedulerId: string;
  port: number;
  reconcileIntervalMs: number;
  /** Queue root URL and credentials, when given; else the caller's defaults apply. */
  rootUrl?: string;
  clientId?: string;
  accessToken?: string;
}

export const schedulerEnvKeys = [
  ['SCHEDULER_ID', 'schedulerId of the task groups it creates (1-38 of a-z A-Z 0-9 - _)', 'conveyor-scheduler'],
  ['SCHEDULER_PORT', 'HTTP port of the scheduler API', '8081'],
  ['SCHEDULER_RECONCILE_INTERVAL_MS', 'How often running pipelines are checked besides task-group-resolved events', '5000'],
  ['TASKCLUSTER_ROOT_URL', "Queue root URL (default: the queue's ROOT_URL)", ''],
  ['TASKCLUSTER_CLIENT_ID / TASKCLUSTER_ACCESS_TOKEN', "The scheduler's credentials (default: the root client). Needs queue:create-task:*, queue:scheduler-id:<schedulerId>, queue:seal-task-group:<schedulerId>/*, queue:cancel-task-group:<schedulerId>/*, queue:status:*, queue:get-task:*", ''],
] as const;

export class SchedulerEnvError extends Error {}

export function loadSchedulerEnv(env: NodeJS.ProcessEnv = process.env): SchedulerEnv {
  const problems: string[] = [];
  const schedulerId = env.SCHEDULER_ID || 'conveyor-scheduler';
  if (!/^[a-zA-Z0-9_-]{1,38}$/.test(schedulerId)) problems.push(`SCHEDULER_ID=${JSON.stringify(schedulerId)}: 1-38 of a-z A-Z 0-9 - _`);
  const port = Number(env.SCHEDULER_PORT || 8081);
  if (!Number.isInteger(port) || port < 0 || port > 65535) problems.push(`SCHEDULER_PORT=${JSON.stringify(env.SCHEDULER_PORT)}: a port number`);
  const reconcileIntervalMs = Number(env.SCHEDULER_RECONCILE_INTERVAL_MS || 5000);
  if (!Number.isInteger(reconcileIntervalMs) || reconcileIntervalMs < 100) problems.push('SCHEDULER_RECONCILE_INTERVAL_MS: a whole number ≥ 100');
  if (!!env.TASKCLUSTER_CLIENT_ID !== !!env.TASKCLUSTER_ACCESS_TOKEN) problems.push('TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN go together');
  if (problems.length > 0) throw new SchedulerEnvError(`invalid scheduler configuration:\n  ${problems.join('\n  ')}`);
  return {
    schedulerId,
    port,
    reconcileIntervalMs,
    rootUrl: env.TASKCLUSTER_ROOT_URL || undefined,
    clientId: env.TASKCLUSTER_CLIENT_ID || undefined,
    accessToken: env.TASKCLUSTER_ACCESS_TOKEN || undefined,
  };
}
