// bench/worker: end-to-end tasks/s through workers, against the queue service as its own process on
// its own database, beside the bare lifecycle in the same run:
//   lifecycle   create → claimWork → reportCompleted by 8 loops, no worker code at all;
//   sdk no-op   a backlog drained by @conveyor/worker at capacity 8 with a handler that does nothing;
//   generic     a backlog drained by the generic worker (`conveyor worker`, its own process) at
//               capacity 8, each task running `true` (temporary directory, process spawn, live log
//               uploaded as an artifact, report).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { QueueClient } from '@conveyor/client';
import { createWorker } from '@conveyor/worker';
import { createDb } from '../../services/queue/src/db/database.js';
import { createTestDatabase } from '../../test/harness/db.js';
import { startService } from '../lifecycle/service.js';
import { Samples, latencyLine } from '../lifecycle/stats.js';
import { machineBusySec, postgresCpuByPid, postgresCpuDelta, processCpuSec } from '../lifecycle/procstat.js';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';

const { values: opt } = parseArgs({
  options: {
    tasks: { type: 'string', default: '1500' },
    capacity: { type: 'string', default: '8' },
    'lifecycle-seconds': { type: 'string', default: '8' },
    breakdown: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'generic-only': { type: 'boolean', default: false },
    checkout: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  process.stdout.write(`node --import tsx bench/worker/run.ts [-- --tasks 1500 --capacity 8 --lifecycle-seconds 8 --breakdown]
  --breakdown     also drain with SDK handlers that only spawn \`true\`, and that only upload a one-line live log
  --profile       run the queue service and the generic worker with --cpu-prof (profiles in bench/worker/profiles/)
  --generic-only  skip the lifecycle and SDK phases (for profiling; no comparison figures)
  --checkout DIR  run the queue service and the generic worker of another checkout (before/after in one window)
`);
  process.exit(0);
}
const backlog = Number(opt.tasks);
const capacity = Number(opt.capacity);
const mainTs = opt.checkout
  ? resolve(opt.checkout, 'services/queue/src/main.ts')
  : fileURLToPath(new URL('../../services/queue/src/main.ts', import.meta.url));
const profileDir = fileURLToPath(new URL('./profiles/', import.meta.url));
const profileArgs = opt.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
if (opt.profile) mkdirSync(profileDir, { recursive: true });

const database = await createTestDatabase();
const svc = await startService({ databaseUrl: database.url, env: { DB_POOL_SIZE: '20' }, nodeArgs: profileArgs, mainTs });
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

/**
 * Waits until the queue has nothing pending or running, both read through small indexes (`pending`
 * by queue; running runs by the partial index `runs_taken_until` — the phases run one after the
 * other, so every running run is this queue's). A count of resolved runs over the queue's tasks
 * scanned more rows with every phase, on the database whose CPU the figures are about.
 */
async function drained(taskQueueId: string): Promise<void> {
  for (;;) {
    const r = await sql<{ n: number }>`
      SELECT (SELECT count(*) FROM pending WHERE task_queue_id = ${taskQueueId}) + (SELECT count(*) FROM runs WHERE state = 'running') AS n`.execute(db);
    if (Number(r.rows[0]!.n) === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
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

/** CPU seconds of a process's own threads, of its live child processes (the generic worker's
 * helpers that start commands) and of the processes all of them have waited for (the commands). */
function cpuOfTree(pid: number): { own: number; helpers: number; children: number } {
  const stats = new Map<number, { ppid: number; own: number; children: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const text = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // fields after the command: state ppid … utime(14) stime(15) cutime(16) cstime(17)
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ').map(Number);
      stats.set(Number(entry), { ppid: f[1]!, own: (f[11]! + f[12]!) / 100, children: (f[13]! + f[14]!) / 100 });
    } catch {
      // gone meanwhile
    }
  }
  const root = stats.get(pid);
  if (!root) return { own: 0, helpers: 0, children: 0 };
  const out = { own: root.own, helpers: 0, children: root.children };
  for (const s of stats.values()) {
    // the bench's own children are the queue service and the generic worker, not helpers
    if (s.ppid !== pid || pid === process.pid) continue;
    out.helpers += s.own;
    out.children += s.children;
  }
  return out;
}

interface WorkerHandle {
  stop(): Promise<void>;
  /** The worker's own process; the bench's process when it runs in here. */
  pid: number;
}

async function drain(taskQueueId: string, payload: Record<string, unknown>, startWorker: () => Promise<WorkerHandle>) {
  await inParallel(backlog, 16, async () => void (await queue.createTask(slug(), definition(taskQueueId, payload))));
  const busy0 = machineBusySec();
  const svc0 = processCpuSec(svc.pid);
  const pg0 = postgresCpuByPid(database.name);
  const started = Date.now();
  const worker = await startWorker();
  const w0 = cpuOfTree(worker.pid);
  await drained(taskQueueId);
  const seconds = (Date.now() - started) / 1000;
  const busy = machineBusySec() - busy0;
  const w1 = cpuOfTree(worker.pid);
  const perTaskMs = (sec: number) => (sec * 1000) / backlog;
  const cpu = {
    service: perTaskMs(processCpuSec(svc.pid) - svc0),
    postgres: perTaskMs(postgresCpuDelta(pg0, postgresCpuByPid(database.name))),
    worker: perTaskMs(w1.own - w0.own),
    helpers: perTaskMs(w1.helpers - w0.helpers),
    commands: perTaskMs(w1.children - w0.children),
    machine: perTaskMs(busy),
  };
  await worker.stop();
  // the worker's own start-up (a process that loads its code) is not the rate it works at
  const span = await sql<{ s: number }>`
    SELECT extract(epoch FROM max(r.resolved) - min(r.started)) AS s FROM runs r JOIN tasks t USING (task_id)
    WHERE t.task_queue_id = ${taskQueueId}`.execute(db);
  const working = Number(span.rows[0]!.s);
  return { perSec: backlog / working, withStartup: backlog / seconds, seconds, cpuBusy: busy / seconds, cpu, ...(await runTimes(taskQueueId)) };
}

try {
  process.stdout.write(`queue service pid ${svc.pid}; backlog ${backlog} tasks per worker phase; capacity ${capacity}\n`);
  const compare = !opt['generic-only'];
  const life = compare ? await lifecycle(Number(opt['lifecycle-seconds']), capacity) : NaN;
  if (compare) process.stdout.write(`lifecycle (create → claimWork → reportCompleted, ${capacity} loops): ${life.toFixed(0)} tasks/s\n`);
  const life32 = compare ? await lifecycle(Number(opt['lifecycle-seconds']), 32) : NaN;
  if (compare) process.stdout.write(`lifecycle (32 loops: what the queue takes with more in flight): ${life32.toFixed(0)} tasks/s\n`);

  const sdk = !compare ? undefined : await drain('bench/sdk-noop', {}, async () => {
    const w = createWorker({
      rootUrl: svc.rootUrl, credentials: svc.credentials, taskQueueId: 'bench/sdk-noop',
      workerGroup: 'bench', workerId: 'sdk', capacity, handler: async () => {},
    });
    return { stop: () => w.stop(), pid: process.pid };
  });
  if (sdk) {
    process.stdout.write(`sdk no-op handler: ${sdk.perSec.toFixed(0)} tasks/s (${sdk.seconds.toFixed(1)} s)\n`);
    process.stdout.write(`  ${latencyLine('claim → resolved', sdk.samples.summary())}\n`);
  }

  const sdkDrain = (name: string, handler: Parameters<typeof createWorker>[0]['handler']) =>
    drain(`bench/${name}`, {}, async () => {
      const w = createWorker({ rootUrl: svc.rootUrl, credentials: svc.credentials, taskQueueId: `bench/${name}`, workerGroup: 'bench', workerId: name, capacity, handler });
      return { stop: () => w.stop(), pid: process.pid };
    });
  if (opt.breakdown) {
    const spawnOnly = await sdkDrain('sdk-spawn', async () => void (await once(spawn('true', [], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] }), 'close')));
    process.stdout.write(`sdk, handler spawns \`true\` only: ${spawnOnly.perSec.toFixed(0)} tasks/s; ${latencyLine('claim → resolved', spawnOnly.samples.summary())}\n`);
    const logOnly = await sdkDrain('sdk-log', async (t) => void (await t.liveLog().write('one line\n')));
    process.stdout.write(`sdk, handler writes a one-line live log only: ${logOnly.perSec.toFixed(0)} tasks/s; ${latencyLine('claim → resolved', logOnly.samples.summary())}\n`);
  }

  const generic = await drain('bench/generic', { command: ['true'], maxRunTime: 30 }, async () => {
    const child = spawn(process.execPath, [...profileArgs, '--import', 'tsx', mainTs, 'worker'], {
      env: {
        PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn',
        TASKCLUSTER_ROOT_URL: svc.rootUrl, TASKCLUSTER_CLIENT_ID: svc.credentials.clientId, TASKCLUSTER_ACCESS_TOKEN: svc.credentials.accessToken,
        WORKER_TASK_QUEUE_ID: 'bench/generic', WORKER_GROUP: 'bench', WORKER_ID: 'generic', WORKER_CAPACITY: String(capacity),
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const exited = new Promise((r) => child.once('exit', r));
    return {
      pid: child.pid!,
      stop: async () => {
        child.kill('SIGTERM');
        await exited;
      },
    };
  });
  process.stdout.write(
    `generic worker, \`true\`: ${generic.perSec.toFixed(0)} tasks/s from its first claim to the last resolution ` +
      `(${generic.withStartup.toFixed(0)} tasks/s counting the worker process's start-up; states ${JSON.stringify(generic.states)})\n`,
  );
  process.stdout.write(`  ${latencyLine('claim → resolved', generic.samples.summary())}\n`);
  process.stdout.write(`  machine CPU busy while draining: ${(generic.cpuBusy * 100).toFixed(0)}% of one core (2 cores = 200%)\n`);
  for (const [name, r] of [['sdk no-op', sdk], ['generic', generic]] as const) {
    if (!r) continue;
    const c = r.cpu;
    process.stdout.write(
      `  CPU per task, ${name.padEnd(9)}: queue service ${c.service.toFixed(2)} ms, postgres ${c.postgres.toFixed(2)} ms, worker ${c.worker.toFixed(2)} ms, ` +
        `its helper processes ${c.helpers.toFixed(2)} ms, its commands ${c.commands.toFixed(2)} ms; whole machine ${c.machine.toFixed(2)} ms (the rest: this bench's polling, other processes)\n`,
    );
  }
  process.stdout.write(
    `\nRESULT generic worker running \`true\` at capacity ${capacity}: ${generic.perSec.toFixed(0)} tasks/s ` +
      `(target ≥ 100)` +
      (sdk
        ? ` — ${((generic.perSec / life) * 100).toFixed(0)}% of the bare lifecycle at the same concurrency (${life.toFixed(0)} tasks/s; ${life32.toFixed(0)} at 32), ` +
          `${((generic.perSec / sdk.perSec) * 100).toFixed(0)}% of the SDK with a no-op handler (${sdk.perSec.toFixed(0)} tasks/s)`
        : '') +
      '\n',
  );
} finally {
  agent.destroy();
  await svc.stop();
  if (opt.profile) process.stdout.write(`CPU profiles of the service and the worker written to ${profileDir}\n`);
  await db.destroy();
  await database.drop();
}
