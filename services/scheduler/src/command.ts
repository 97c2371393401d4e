// `conveyor scheduler` (the service) and `conveyor pipeline submit|status|list` (its CLI).
import { randomUUID } from 'node:crypto';
import { QueueError } from '@conveyor/client';
import type { Config } from '../../queue/src/config.js';
import { SchedulerClient } from './client.js';
import { loadSchedulerEnv, SchedulerEnvError } from './config.js';
import { PipelineError, readPipelineFile, derivedSlugid } from './pipeline.js';
import type { Logger } from './progress.js';
import { startScheduler } from './scheduler.js';
import type { PipelineStatus } from './status.js';

function fail(message: string, code = 2): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

function schedulerEnv() {
  try {
    return loadSchedulerEnv();
  } catch (err) {
    if (err instanceof SchedulerEnvError) fail(err.message);
    throw err;
  }
}

/** The credentials to act with: TASKCLUSTER_* if set, else the root client when its token was configured. */
function credentialsFrom(config: Config, env: { clientId?: string; accessToken?: string }) {
  if (env.clientId && env.accessToken) return { clientId: env.clientId, accessToken: env.accessToken };
  if (!config.generatedRootAccessToken) return { clientId: config.rootClientId, accessToken: config.rootAccessToken! };
  return undefined;
}

export async function schedulerCommand(config: Config, log: Logger): Promise<() => Promise<void>> {
  const env = schedulerEnv();
  if (!config.databaseUrl) fail('conveyor scheduler needs DATABASE_URL: the queue\'s PostgreSQL, where it keeps its progress');
  const credentials = credentialsFrom(config, env);
  if (!credentials) fail('conveyor scheduler needs credentials: TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN, or ROOT_ACCESS_TOKEN');
  const scheduler = await startScheduler({
    queueConfig: config,
    rootUrl: env.rootUrl ?? config.rootUrl,
    credentials,
    schedulerId: env.schedulerId,
    port: env.port,
    reconcileIntervalMs: env.reconcileIntervalMs,
    log,
  });
  process.stdout.write(`Conveyor scheduler is up: ${scheduler.url}/ (schedulerId ${env.schedulerId}; events from ${config.amqpUrl ? 'RabbitMQ' : 'the queue HTTP event stream'})\n`);
  return () => scheduler.stop();
}

const usage = `usage:
  conveyor pipeline submit <file.yaml|file.json> [--id <pipelineId>] [--wait]
  conveyor pipeline status <pipelineId> [--wait]
  conveyor pipeline list
environment: SCHEDULER_URL (default http://localhost:8081), TASKCLUSTER_CLIENT_ID/TASKCLUSTER_ACCESS_TOKEN or ROOT_ACCESS_TOKEN`;

function describe(st: PipelineStatus, rootUrl: string): string {
  const lines = [`pipeline ${st.pipelineId} (${st.name}): ${st.state}${st.reason ? ` — ${st.reason}` : ''}`];
  for (const stage of st.stages) {
    lines.push(`  stage ${stage.name}: ${stage.state}   task group ${stage.taskGroupId}`);
    for (const t of stage.tasks) {
      const reason = t.reasonResolved && t.reasonResolved !== t.state ? `/${t.reasonResolved}` : '';
      const log = ['completed', 'failed', 'exception', 'running'].includes(t.state) ? `   log: ${rootUrl}/api/queue/v1/task/${t.taskId}/artifacts/public/logs/live.log` : '';
      lines.push(`    ${t.name.padEnd(20)} ${(t.state + reason).padEnd(28)} ${t.taskId}${log}`);
    }
  }
  return lines.join('\n');
}

async function follow(client: SchedulerClient, pipelineId: string, rootUrl: string): Promise<PipelineStatus> {
  let last = '';
  for (;;) {
    const st = await client.status(pipelineId);
    const text = describe(st, rootUrl);
    if (text !== last) process.stdout.write(`${text}\n`);
    last = text;
    if (st.state !== 'running') return st;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export async function pipelineCommand(config: Config, _log: Logger, args: string[]): Promise<() => Promise<void>> {
  const [verb, arg, ...rest] = args;
  const flag = (name: string) => rest.includes(name);
  const option = (name: string) => {
    const i = rest.indexOf(name);
    return i >= 0 ? rest[i + 1] : undefined;
  };
  const base = (process.env.SCHEDULER_URL ?? 'http://localhost:8081').replace(/\/+$/, '');
  const client = new SchedulerClient(base.endsWith('/api/scheduler/v1') ? base : `${base}/api/scheduler/v1`, credentialsFrom(config, loadSchedulerEnv()));
  const rootUrl = process.env.TASKCLUSTER_ROOT_URL ?? config.rootUrl;
  try {
    if (verb === 'submit' && arg) {
      const pipeline = readPipelineFile(arg);
      const pipelineId = option('--id') ?? derivedSlugid('cli', randomUUID());
      const st = await client.submit(pipelineId, pipeline);
      process.stdout.write(`submitted pipeline ${pipelineId}\n`);
      const end = flag('--wait') ? await follow(client, pipelineId, rootUrl) : st;
      if (!flag('--wait')) process.stdout.write(`${describe(st, rootUrl)}\nfollow it: conveyor pipeline status ${pipelineId} --wait\n`);
      process.exit(end.state === 'failed' ? 1 : 0);
    }
    if (verb === 'status' && arg) {
      const st = flag('--wait') ? await follow(client, arg, rootUrl) : await client.status(arg);
      if (!flag('--wait')) process.stdout.write(`${describe(st, rootUrl)}\n`);
      process.exit(st.state === 'failed' ? 1 : 0);
    }
    if (verb === 'list') {
      const { pipelines } = await client.list();
      for (const p of pipelines) process.stdout.write(`${p.pipelineId}  ${p.state.padEnd(9)} ${p.created}  ${p.name}${p.reason ? `  (${p.reason})` : ''}\n`);
      process.exit(0);
    }
  } catch (err) {
    if (err instanceof PipelineError) fail(`${arg}: ${err.message}`);
    if (err instanceof QueueError) fail(`${err.statusCode} ${err.code}: ${err.message}`, 1);
    if ((err as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED') fail(`no scheduler at ${client.url} (start one with npm start or conveyor scheduler; or set SCHEDULER_URL)`, 1);
    throw err;
  }
  fail(usage);
}
