// bench/worker: end-to-end tasks/s through workers, against the queue service as its own process on
// its own database, beside the bare lifecycle in the same run:
//   lifecycle   create → claimWork → reportCompleted by 8 loops, no worker code at all;
//   sdk no-op   a backlog drained by @conveyor/worker at capacity 8 with a handler that does nothing;
//   generic     a backlog drained by the generic worker (`conveyor worker`, its own process) at
//               capacity 8, each task running `true` (temporary directory, process spawn, live log
//               uploaded as an artifact, report).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { QueueClient } from '@conveyor/client';
import { createWorker } from '@conveyor/worker';
import { createDb } from '../../services/queue/src/db/database.js';
import { createTestDatabase } from '../../test/harness/db.js';
import { startService } from '../lifecycle/service.js';
import { Samples, latencyLine } from '../lifecycle/stats.js';
import { machineBusySec } from '../lifecycle/procstat.js';

const { values: opt } = parseArgs({
  options: {
    tasks: { type: 'string', default: '1500' },
    capacity: { type: 'string', default: '8' },
    'lifecycle-seconds': { type: 'string', default: '8' },
    breakdown: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  process.stdout.write(`node --import tsx bench/worker/run.ts [-- --tasks 1500 --capacity 8 --lifecycle-seconds 8 --breakdown]
  --breakdown  also drain with SDK handlers that only spawn \`true\`, and that only upload a one-line live log
`);
  process.exit(0);
}
const backlog = Number(opt.tasks);
const capacity = Number(opt.capacity);
const mainTs = fileURLToPath(new URL('../../services/queue/src/main.ts', import.meta.url));

const database = await createTestDatabase();
const svc = await startService({ databaseUrl: database.url, env: { DB_POOL_SIZE: '20' } });
const { db } = createDb(database.url, 2);
const http = await import('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
const queue = new QueueClient({ rootUrl: svc.rootUrl, credentials: svc.credentials, agent, retries: 0 });
const slug = () => createTaskId();

function createTaskId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0]! &= 0x7f;
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return Buffer.from(b).toString('base64url');
}

function definition(taskQueueId: string, payload: Record<string, unknown> = {}) {
  const now = Date.now();
  return {
    taskQueueId,
    created: new Date(now).toISOString(),
    deadline: new Date(now + 3600_000).toISOString(),
    payload,
    metadata: { name: 'bench', description: 'bench/worker', owner: 'bench@example.com', source: 'https://example.com/bench' },
  };
}

async function inParallel(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await fn(next++);
  }));
}

async function lifecycle(seconds: number, loops: number): Promise<number> {
  const taskQueueId = 'bench/lifecycle';
  const stopAt = Date.now() + seconds * 1000;
  let done = 0;
  await Promise.all(Array.from({ length: loops }, async (_, w) => {
    while (Date.now() < stopAt) {
      await queue.createTask(slug(), definition(taskQueueId));
      const { tasks } = await queue.claimWork(taskQueueId, { workerGroup: 'bench', workerId: `loop-${w}`, tasks: 1 });
      for (const c of tasks) {
        await queue.withCredentials(c.credentials).reportCompleted(c.status.taskId, c.runId);
        done += 1;
      }
    }
  }));
  return done / seconds;
}

async function resolvedCount(taskQueueId: string): Promise<number> {
  const r = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM runs r JOIN tasks t USING (task_id)
    WHERE t.task_queue_id = ${taskQueueId} AND r.state IN ('completed', 'failed', 'exception')`.execute(db);
  return r.rows[0]!.n;
}

/** started → resolved of every run on the queue (the worker's time per task) and the states seen. */
async function runTimes(taskQueueId: string): Promise<{ samples: Samples; states: Record<string, number> }> {
  const rows = await sql<{ ms: number; state: string }>`
    SELECT extract(epoch FROM r.resolved - r.started) * 1000 AS ms, r.state FROM runs r JOIN tasks t USING (task_id)
    WHERE t.task_queue_id = ${taskQueueId}`.execute(db);
  const samples = new Samples();
  const states: Record<string, number> = {};
  for (const r of rows.rows) {
    samples.add(Number(r.ms));
    states[r.state] = (states[r.state] ?? 0) + 1;
  }
  return { samples, states };
}

async function drain(taskQueueId: string, payload: Record<string, unknown>, startWorker: () => Promise<() => Promise<void>>) {
  await inParallel(backlog, 16, async () => void (await queue.createTask(slug(), definition(taskQueueId, payload))));
  const busy0 = machineBusySec();
  const started = Date.now();
  const stop = await startWorker();
  while ((await resolvedCount(taskQueueId)) < backlog) await new Promise((r) => setTimeout(r, 25));
  const seconds = (Date.now() - started) / 1000;
  const busy = machineBusySec() - busy0;
  await stop();
  return { perSec: backlog / seconds, seconds, cpuBusy: busy / seconds, ...(await runTimes(taskQueueId)) };
}

try {
  process.stdout.write(`queue service pid ${svc.pid}; backlog ${backlog} tasks per worker phase; capacity ${capacity}\n`);
  const life = await lifecycle(Number(opt['lifecycle-seconds']), capacity);
  process.stdout.write(`lifecycle (create → claimWork → reportCompleted, ${capacity} loops): ${life.toFixed(0)} tasks/s\n`);
  const life32 = await lifecycle(Number(opt['lifecycle-seconds']), 32);
  process.stdout.write(`lifecycle (32 loops: what the queue takes with more in flight): ${life32.toFixed(0)} tasks/s\n`);

  const sdk = await drain('bench/sdk-noop', {}, async () => {
    const w = createWorker({
      rootUrl: svc.rootUrl, credentials: svc.credentials, taskQueueId: 'bench/sdk-noop',
      workerGroup: 'bench', workerId: 'sdk', capacity, handler: async () => {},
    });
    return () => w.stop();
  });
  process.stdout.write(`sdk no-op handler: ${sdk.perSec.toFixed(0)} tasks/s (${sdk.seconds.toFixed(1)} s)\n`);
  process.stdout.write(`  ${latencyLine('claim → resolved', sdk.samples.summary())}\n`);

  const sdkDrain = (name: string, handler: Parameters<typeof createWorker>[0]['handler']) =>
    drain(`bench/${name}`, {}, async () => {
      const w = createWorker({ rootUrl: svc.rootUrl, credentials: svc.credentials, taskQueueId: `bench/${name}`, workerGroup: 'bench', workerId: name, capacity, handler });
      return () => w.stop();
    });
  if (opt.breakdown) {
    const spawnOnly = await sdkDrain('sdk-spawn', async () => void (await once(spawn('true', [], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] }), 'close')));
    process.stdout.write(`sdk, handler spawns \`true\` only: ${spawnOnly.perSec.toFixed(0)} tasks/s; ${latencyLine('claim → resolved', spawnOnly.samples.summary())}\n`);
    const logOnly = await sdkDrain('sdk-log', async (t) => void (await t.liveLog().write('one line\n')));
    process.stdout.write(`sdk, handler writes a one-line live log only: ${logOnly.perSec.toFixed(0)} tasks/s; ${latencyLine('claim → resolved', logOnly.samples.summary())}\n`);
  }

  const generic = await drain('bench/generic', { command: ['true'], maxRunTime: 30 }, async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', mainTs, 'worker'], {
      env: {
        PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn',
        TASKCLUSTER_ROOT_URL: svc.rootUrl, TASKCLUSTER_CLIENT_ID: svc.credentials.clientId, TASKCLUSTER_ACCESS_TOKEN: svc.credentials.accessToken,
        WORKER_TASK_QUEUE_ID: 'bench/generic', WORKER_GROUP: 'bench', WORKER_ID: 'generic', WORKER_CAPACITY: String(capacity),
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const exited = new Promise((r) => child.once('exit', r));
    return async () => {
      child.kill('SIGTERM');
      await exited;
    };
  });
  process.stdout.write(`generic worker, \`true\`: ${generic.perSec.toFixed(0)} tasks/s (${generic.seconds.toFixed(1)} s, includes the worker's start-up; states ${JSON.stringify(generic.states)})\n`);
  process.stdout.write(`  ${latencyLine('claim → resolved', generic.samples.summary())}\n`);
  process.stdout.write(`  machine CPU busy while draining: ${(generic.cpuBusy * 100).toFixed(0)}% of one core (2 cores = 200%)\n`);
  process.stdout.write(
    `\nRESULT generic worker running \`true\` at capacity ${capacity}: ${generic.perSec.toFixed(0)} tasks/s ` +
      `(target ≥ 100) — ${((generic.perSec / life) * 100).toFixed(0)}% of the bare lifecycle at the same concurrency (${life.toFixed(0)} tasks/s; ${life32.toFixed(0)} at 32), ` +
      `${((generic.perSec / sdk.perSec) * 100).toFixed(0)}% of the SDK with a no-op handler (${sdk.perSec.toFixed(0)} tasks/s)\n`,
  );
} finally {
  agent.destroy();
  await svc.stop();
  await db.destroy();
  await database.drop();
}
