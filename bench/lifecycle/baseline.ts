// --baseline <dir>: the lean job against the service of another checkout too, for a before/after
// ratio measured on the same machine at the same time. Make the checkout with
//   git archive <commit> | tar -x -C <dir> && ln -s "$PWD/node_modules" <dir>/node_modules
// Its service gets an empty database that its own migrations fill. Current and baseline runs
// alternate, so a neighbour's load hits both alike.
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { adminUrl } from '../../test/harness/db.js';
import { printPhase, runPhase, type Phase } from './phase.js';
import { startService, type RunningService } from './service.js';
import type { Job } from './workload.js';

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function emptyDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `conveyor_bench_${randomBytes(6).toString('hex')}`;
  await admin(`CREATE DATABASE ${name}`);
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return { name, url: u.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

const rate = (p: Phase) => p.result.lifecycles / p.result.seconds;

/** CPU per lifecycle over several phases (with --rate the fair comparison: same rate, less noise). */
class CpuTotals {
  private service = 0;
  private postgres = 0;
  private lifecycles = 0;

  add(p: Phase): void {
    this.service += p.cpu.service * p.result.seconds;
    this.postgres += p.cpu.postgres * p.result.seconds;
    this.lifecycles += p.result.lifecycles;
  }

  line(): string {
    const ms = (sec: number) => `${((sec * 1000) / this.lifecycles).toFixed(2)} ms`;
    return `service ${ms(this.service)}, PostgreSQL ${ms(this.postgres)}`;
  }
}

/**
 * Runs `rounds` × (current, baseline) lean phases; prints each and the ratio of the summed
 * rates. `current` is the already running service of this checkout.
 */
export async function runBaseline(opts: {
  dir: string;
  current: { svc: RunningService; database: string };
  job: (svc: RunningService) => Job;
  rounds: number;
  env: Record<string, string>;
}): Promise<void> {
  const db = await emptyDatabase();
  let baseline: RunningService | undefined;
  try {
    baseline = await startService({
      databaseUrl: db.url,
      env: opts.env,
      mainTs: join(resolve(opts.dir), 'services/queue/src/main.ts'),
    });
    let now = 0;
    let before = 0;
    const cpu = { now: new CpuTotals(), before: new CpuTotals() };
    for (let round = 1; round <= opts.rounds; round++) {
      const c = await runPhase(opts.current.svc, opts.current.database, opts.job(opts.current.svc));
      printPhase(`round ${round}: this checkout`, c);
      const b = await runPhase(baseline, db.name, opts.job(baseline));
      printPhase(`round ${round}: baseline ${opts.dir}`, b);
      now += rate(c);
      before += rate(b);
      cpu.now.add(c);
      cpu.before.add(b);
    }
    process.stdout.write(
      `\nthis checkout / baseline: ${(now / before).toFixed(2)}× lifecycles/s over ${opts.rounds} alternating rounds\n` +
        `CPU per lifecycle, this checkout vs baseline: ${cpu.now.line()} vs ${cpu.before.line()}\n`,
    );
  } finally {
    await baseline?.stop();
    await db.drop();
  }
}
