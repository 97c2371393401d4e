// bench/lifecycle: create → claimWork → reportCompleted over HTTP, Hawk-signed, against the queue
// service running as its own process on its own database, driven by a separate load-generator
// process. `npm run bench -- --help` lists the options.
import { mkdirSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createTestDatabase } from '../../test/harness/db.js';
import { runBaseline } from './baseline.js';
import { formatHostSpeed, measureHostSpeed } from './host-speed.js';
import { pct, printPhase, runPhase, type Phase } from './phase.js';
import { memoryMb } from './procstat.js';
import { startService, type RunningService } from './service.js';
import { ms } from './stats.js';
import type { Job } from './workload.js';

const { values: opt } = parseArgs({
  options: {
    connections: { type: 'string', default: '50' },
    rate: { type: 'string' },
    duration: { type: 'string', default: '15' },
    warmup: { type: 'string', default: '3' },
    'official-connections': { type: 'string', default: '10' },
    'official-duration': { type: 'string', default: '5' },
    'handoff-samples': { type: 'string', default: '200' },
    waiters: { type: 'string', default: '4' },
    phases: { type: 'string', default: 'lean,official,handoff' },
    amqp: { type: 'boolean', default: false },
    'amqp-url': { type: 'string', default: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672' },
    'shared-group': { type: 'boolean', default: false },
    pool: { type: 'string' },
    'node-options': { type: 'string' },
    profile: { type: 'boolean', default: false },
    baseline: { type: 'string' },
    rounds: { type: 'string', default: '2' },
    help: { type: 'boolean', default: false },
  },
});

// Interrupted (Ctrl-C, `timeout`): exit normally, so the service started below is stopped by its
// exit hook (service.ts); the generator stops by itself when its IPC channel closes.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => process.exit(128 + constants.signals[sig]));
}

if (opt.help) {
  process.stdout.write(`npm run bench -- [options]
  --connections N           lean generator's concurrent connections (50)
  --rate N                  lean: start at most N lifecycles/s (compare CPU per lifecycle at one rate)
  --duration S              measured seconds of the lean run (15), after --warmup S (3)
  --official-connections N  taskcluster-client concurrency (10), for --official-duration S (5)
  --handoff-samples N       tasks created one at a time for the hand-off latency (200)
  --waiters N               claimWork long-polls kept waiting during the hand-off run (4)
  --phases a,b,c            which of lean,official,handoff to run
  --amqp                    start the service with AMQP_URL (--amqp-url, default local RabbitMQ)
  --shared-group            put every task in one task group (a contended group row)
  --pool N                  DB_POOL_SIZE of the service
  --node-options="FLAGS"    extra node flags for this checkout's service (not the --baseline one), e.g.
                            to compare a V8 flag against the same code without it
  --profile                 run the service with --cpu-prof (profiles in bench/lifecycle/profiles/)
  --baseline DIR            also run the lean job against the service of another checkout, alternating
                            --rounds N (2) times, and print the ratio (see baseline.ts)
`);
  process.exit(0);
}

async function main(): Promise<void> {
  const phases = new Set(opt.phases.split(','));
  const speed = measureHostSpeed();
  const database = await createTestDatabase();
  const profileDir = fileURLToPath(new URL('./profiles/', import.meta.url));
  if (opt.profile) mkdirSync(profileDir, { recursive: true });
  const svc = await startService({
    databaseUrl: database.url,
    ...(opt.amqp ? { amqpUrl: opt['amqp-url'] } : {}),
    env: opt.pool ? { DB_POOL_SIZE: opt.pool } : {},
    nodeArgs: [...(opt['node-options']?.split(' ').filter(Boolean) ?? []), ...(opt.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
  });
  const connections = Number(opt.connections);
  process.stdout.write(
    `Conveyor lifecycle bench: service pid ${svc.pid} at ${svc.rootUrl}, database ${database.name}, ` +
      `AMQP ${opt.amqp ? 'on' : 'off'}, ${opt['shared-group'] ? 'one shared task group' : 'a task group per task'}\n` +
      `${formatHostSpeed(speed)}\n`,
  );
  const env: Record<string, string> = opt.pool ? { DB_POOL_SIZE: opt.pool } : {};
  const forService = (s: RunningService) => ({ rootUrl: s.rootUrl, credentials: s.credentials });
  const base = {
    ...forService(svc),
    warmupSec: Number(opt.warmup),
    samples: Number(opt['handoff-samples']),
    waiters: Number(opt.waiters),
    sharedGroup: opt['shared-group'],
  };
  const rate = opt.rate ? { rate: Number(opt.rate) } : {};
  const queue = (name: string) => `bench/${name}-${Math.random().toString(36).slice(2, 8)}`;
  const results: Partial<Record<Job['kind'], Phase>> = {};
  try {
    if (phases.has('lean')) {
      const p = await runPhase(svc, database.name, { ...base, ...rate, kind: 'lean', taskQueueId: queue('lean'), connections, durationSec: Number(opt.duration) });
      printPhase(`lean generator (undici Pool + Hawk), ${connections} connections${opt.rate ? `, at most ${opt.rate}/s` : ''}, ${opt.duration} s`, p);
      results.lean = p;
    }
    if (phases.has('official')) {
      const n = Number(opt['official-connections']);
      const p = await runPhase(svc, database.name, {
        ...base, kind: 'official', taskQueueId: queue('official'), connections: n, durationSec: Number(opt['official-duration']),
      });
      printPhase(`official taskcluster-client, ${n} concurrent, ${opt['official-duration']} s`, p);
      results.official = p;
    }
    if (phases.has('handoff')) {
      const p = await runPhase(svc, database.name, { ...base, kind: 'handoff', taskQueueId: queue('handoff'), connections: 1, durationSec: 0 });
      printPhase(`claimWork hand-off: ${opt.waiters} long-polls waiting, ${opt['handoff-samples']} tasks created one at a time`, p);
      results.handoff = p;
    }
    if (opt.amqp) await relayBacklog(database.url);
    if (opt.baseline) {
      const lean = { ...base, ...rate, kind: 'lean' as const, connections, durationSec: Number(opt.duration) };
      await runBaseline({
        dir: opt.baseline,
        current: { svc, database: database.name },
        job: (s) => ({ ...lean, ...forService(s), taskQueueId: queue('lean') }),
        rounds: Number(opt.rounds),
        env,
      });
    }
  } finally {
    const mem = memoryMb(svc.pid);
    await svc.stop();
    await database.drop();
    process.stdout.write(`\nservice memory      peak RSS ${mem.peakMb.toFixed(0)} MB (VmHWM), RSS at end ${mem.rssMb.toFixed(0)} MB\n`);
    summary(results, mem.peakMb);
    if (opt.profile) process.stdout.write(`CPU profile of the service written to ${profileDir}\n`);
  }
}

/** With AMQP on: whether the relay kept up — how long the unpublished backlog takes to drain. */
async function relayBacklog(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const count = async () =>
      (await client.query<{ total: number; unpublished: number }>(
        'SELECT count(*)::int AS total, (count(*) FILTER (WHERE published IS NULL))::int AS unpublished FROM outbox',
      )).rows[0]!;
    const t0 = Date.now();
    let c = await count();
    const backlog = c.unpublished;
    while (c.unpublished > 0 && Date.now() - t0 < 30_000) {
      await new Promise((r) => setTimeout(r, 100));
      c = await count();
    }
    process.stdout.write(
      `\nrelay              ${c.total} events; ${backlog} unpublished when the load stopped, ` +
        (c.unpublished === 0 ? `all published ${((Date.now() - t0) / 1000).toFixed(1)} s later\n` : `${c.unpublished} still unpublished after 30 s\n`),
    );
  } finally {
    await client.end();
  }
}

function summary(results: Partial<Record<Job['kind'], Phase>>, peakMb: number): void {
  const lines = ['\nsummary'];
  const check = (ok: boolean) => (ok ? 'ok' : 'MISSED');
  const lean = results.lean?.result;
  const official = results.official?.result;
  if (lean) {
    const rate = lean.lifecycles / lean.seconds;
    lines.push(`  lifecycles/s (lean, ${opt.connections} conn)   ${rate.toFixed(0)}   target ≥ 1000: ${check(rate >= 1000)}`);
    lines.push(`  load generator CPU              ${lean.cpuSec.toFixed(2)} s over ${lean.seconds.toFixed(1)} s (${pct(lean.cpuSec / lean.seconds)} of a core)`);
    if (official) {
      const o = official.lifecycles / official.seconds;
      lines.push(`  official taskcluster-client     ${o.toFixed(0)} lifecycles/s at ${opt['official-connections']} concurrent (lean/official ${(rate / o).toFixed(1)}×)`);
    }
  }
  const h = results.handoff?.result.handoff;
  if (h) lines.push(`  hand-off p50 / p99              ${ms(h.p50)} / ${ms(h.p99)}   target p99 < 20 ms: ${check(h.p99 < 20)}`);
  lines.push(`  service peak RSS                ${peakMb.toFixed(0)} MB   target < 300 MB: ${check(peakMb < 300)}`);
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((err) => {
  process.stderr.write(`${(err as Error)?.stack ?? err}\n`);
  process.exit(1);
});
