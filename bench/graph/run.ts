// bench/graph: how fast the queue acts on the task graph and the clock.
//  - unblocking: from the last dependency's reportCompleted to all N dependents pending, for N = 1
//    (the baseline), 100, 1,000 and 10,000;
//  - claim expiry and deadline lag: how long after takenUntil / the deadline the run is resolved,
//    with the loops running as in production (default intervals).
// The queue runs in this process (API + loops) on its own database; requests go over HTTP with
// taskcluster-client. `node --import tsx bench/graph/run.ts -- --help` lists the options.
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import taskcluster from 'taskcluster-client';
import { startQueue, type QueueService } from '../../services/queue/src/app.js';
import { loadConfig } from '../../services/queue/src/config.js';
import { createTestDatabase } from '../../test/harness/db.js';
import { cloneUnscheduled, until } from '../../test/harness/graph.js';
import { slugid, taskDef, uniqueQueue } from '../../test/harness/tasks.js';
import { machineBusySec, processCpuSec } from '../lifecycle/procstat.js';
import { latencyLine, ms, Samples } from '../lifecycle/stats.js';

const { values: opt } = parseArgs({
  // `node … run.ts -- --sizes 100` passes the `--` through
  args: process.argv.slice(2).filter((a) => a !== '--'),
  options: {
    sizes: { type: 'string', default: '1,100,1000,10000' },
    repeat: { type: 'string', default: '3' },
    timers: { type: 'string', default: '60' },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  process.stdout.write(`node --import tsx bench/graph/run.ts -- [options]
  --sizes a,b,c   dependents per root (1,100,1000,10000; the first is the baseline)
  --repeat N      runs per size (3); the median is reported
  --timers N      claims and deadlines timed for the lag figures (60 each)
`);
  process.exit(0);
}

const database = await createTestDatabase();
const config = loadConfig({}, {
  port: 0,
  databaseUrl: database.url,
  rootAccessToken: randomBytes(16).toString('hex'),
  exchangePrefix: `exchange/conveyor-bench-${randomBytes(4).toString('hex')}/v1/`,
  logLevel: 'warn',
  taskClaimTimeoutSec: 1,
  claimWorkTimeoutSec: 1,
});
const service: QueueService = await startQueue({ config, api: true, loops: true });
config.rootUrl = service.url;
const queue = new taskcluster.Queue({ rootUrl: service.url, credentials: { clientId: 'root', accessToken: config.rootAccessToken }, retries: 0 });
const db = service.ctx.db;
const busyAtStart = machineBusySec();
const cpuAtStart = processCpuSec(process.pid);
const startedAt = Date.now();

const pendingIn = async (taskQueueId: string) =>
  (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pending WHERE task_queue_id = ${taskQueueId}`.execute(db)).rows[0]!.n;

/** One root with n dependents; ms from reportCompleted(root) being sent to all n pending. */
async function unblock(n: number): Promise<number> {
  const rootQueue = uniqueQueue();
  const dependentQueue = uniqueQueue();
  const root = slugid();
  await queue.createTask(root, taskDef({ taskQueueId: rootQueue }));
  const template = slugid();
  await queue.createTask(template, taskDef({ taskQueueId: dependentQueue, dependencies: [root] }));
  await cloneUnscheduled(db, template, Array.from({ length: n - 1 }, () => ({ taskId: slugid(), dependencies: [root] })));
  const claim = await queue.claimWork(rootQueue, { workerGroup: 'bench', workerId: 'w', tasks: 1 });
  const worker = new taskcluster.Queue({ rootUrl: service.url, credentials: claim.tasks[0].credentials, retries: 0 });
  const t0 = performance.now();
  await worker.reportCompleted(root, 0);
  while ((await pendingIn(dependentQueue)) < n) {
    await new Promise((r) => setTimeout(r, 2));
  }
  const elapsed = performance.now() - t0;
  // leave the queue empty for the next size: these dependents are done with
  await sql`DELETE FROM pending WHERE task_queue_id = ${dependentQueue}`.execute(db);
  return elapsed;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sizes = opt.sizes.split(',').map(Number);
const repeat = Number(opt.repeat);
const unblockMs = new Map<number, number[]>();
await unblock(10); // warm-up: JIT, connections, plans
for (const n of sizes) {
  const runs = [];
  for (let i = 0; i < repeat; i++) runs.push(await unblock(n));
  unblockMs.set(n, runs);
  process.stderr.write(`unblocked ${n}: ${runs.map((r) => r.toFixed(1)).join(', ')} ms\n`);
}

/** Lag of claim expiry: claims made in waves, each run resolved how long after its takenUntil. */
async function claimExpiryLag(count: number): Promise<Samples> {
  const taskQueueId = uniqueQueue();
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push(slugid());
  await Promise.all(ids.map((id) => queue.createTask(id, taskDef({ taskQueueId, retries: 0 }))));
  // waves 250 ms apart: takenUntil rounds up to whole seconds, so several distinct due times
  for (let claimed = 0; claimed < count; ) {
    claimed += (await queue.claimWork(taskQueueId, { workerGroup: 'bench', workerId: 'w', tasks: 10 })).tasks.length;
    await new Promise((r) => setTimeout(r, 250));
  }
  await until('claims expired', async () =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM runs WHERE task_id = ANY(${ids}) AND reason_resolved = 'claim-expired'`.execute(db)).rows[0]!.n === count,
  60_000);
  const rows = await sql<{ lag: number }>`
    SELECT extract(epoch FROM resolved - taken_until) * 1000 AS lag FROM runs WHERE task_id = ANY(${ids})`.execute(db);
  const s = new Samples();
  for (const r of rows.rows) s.add(Number(r.lag));
  return s;
}

/** Lag of deadlines: pending tasks with deadlines spread over 3 s, each resolved how long after it. */
async function deadlineLag(count: number): Promise<Samples> {
  const now = Date.now();
  const tasks = Array.from({ length: count }, (_, i) => ({ id: slugid(), deadline: new Date(now + 1500 + Math.floor((i * 3000) / count)) }));
  await Promise.all(tasks.map((t) => queue.createTask(t.id, taskDef({ taskQueueId: uniqueQueue(), deadline: t.deadline.toJSON() }))));
  const ids = tasks.map((t) => t.id);
  await until('deadlines resolved', async () =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM runs WHERE task_id = ANY(${ids}) AND reason_resolved = 'deadline-exceeded'`.execute(db)).rows[0]!.n === count,
  60_000);
  const rows = await sql<{ lag: number }>`
    SELECT extract(epoch FROM r.resolved - t.deadline) * 1000 AS lag FROM runs r JOIN tasks t USING (task_id) WHERE r.task_id = ANY(${ids})`.execute(db);
  const s = new Samples();
  for (const r of rows.rows) s.add(Number(r.lag));
  return s;
}

const timers = Number(opt.timers);
const expiry = await claimExpiryLag(timers);
const deadlines = await deadlineLag(timers);

const wallSec = (Date.now() - startedAt) / 1000;
const otherCpu = machineBusySec() - busyAtStart - (processCpuSec(process.pid) - cpuAtStart);
await service.stop();
await database.drop();

const base = median(unblockMs.get(sizes[0]!)!);
const lines = [
  `bench/graph — ${new Date().toISOString()}, DEPENDENCY_BATCH_SIZE ${config.dependencyBatchSize}, RESOLVER_INTERVAL_MS ${config.resolverIntervalMs}`,
  `load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')}; CPU used by other processes ${otherCpu.toFixed(1)} s over ${wallSec.toFixed(0)} s`,
  '',
  'last dependency completed → all N dependents pending (median of runs; per dependent; × the N=1 baseline)',
  ...sizes.map((n) => {
    const m = median(unblockMs.get(n)!);
    return `  N = ${String(n).padStart(6)}   ${ms(m).padStart(10)}   ${((m / n) * 1000).toFixed(0).padStart(6)} µs each   ×${(m / base).toFixed(1)}   (runs: ${unblockMs.get(n)!.map((r) => r.toFixed(0)).join(', ')})`;
  }),
  '',
  'resolved after their time (ms)',
  `  ${latencyLine('claim expiry', expiry.summary())}`,
  `  ${latencyLine('deadline', deadlines.summary())}`,
];
process.stdout.write(lines.join('\n') + '\n');
process.exit(0);
