// The service's CPU per lifecycle outside SQL: the lean generator drives create → claimWork →
// reportCompleted against http-cost-server.ts, no database involved, in alternating rounds of
//   bare      plain fastify 5, same server options, canned bodies (the floor)
//   conveyor  our buildServer with stubbed SQL handlers (Hawk, scopes, validation, credentials)
//   baseline  the same as conveyor, with another checkout's code (--baseline DIR)
// and prints the CPU per lifecycle of server and generator for each.
//   node --import tsx bench/lifecycle/http-cost.ts [--modes bare,conveyor] [--baseline DIR]
//        [--connections 50] [--duration 8] [--rounds 2] [--rate N] [--profile]
// --rate: lifecycles started per second at most; CPU per lifecycle depends on the rate (fewer
// events per wake-up when slower), so compare modes at one rate the busy box can sustain.
// --profile: CPU profiles of the servers and the generator in profiles/http-cost-<mode|generator>/
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runPhase } from './phase.js';
import type { RunningService } from './service.js';

const { values: opt } = parseArgs({
  options: {
    modes: { type: 'string', default: 'bare,conveyor' },
    baseline: { type: 'string' },
    connections: { type: 'string', default: '50' },
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '2' },
    profile: { type: 'boolean', default: false },
    rate: { type: 'string' },
  },
});

const serverTs = fileURLToPath(new URL('./http-cost-server.ts', import.meta.url));
const profileDir = fileURLToPath(new URL('./profiles/', import.meta.url));

async function start(mode: string): Promise<RunningService> {
  const [kind, root] = mode === 'baseline' ? ['conveyor', opt.baseline!] : [mode];
  // one folder per mode: the loader's worker thread writes a profile of its own
  const profile = opt.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}http-cost-${mode}`] : [];
  const child: ChildProcess = fork(serverTs, [kind!, ...(root ? [root] : [])], {
    execArgv: [...profile, '--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { port, accessToken } = await new Promise<{ port: number; accessToken: string }>((resolve, reject) => {
    child.once('message', (m) => resolve(m as { port: number; accessToken: string }));
    child.once('exit', (code) => reject(new Error(`${mode} server exited with ${code}`)));
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    pid: child.pid!,
    rootUrl: `http://127.0.0.1:${port}`,
    credentials: { clientId: 'root', accessToken },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const modes = opt.modes.split(',').concat(opt.baseline ? ['baseline'] : []);
if (opt.profile) mkdirSync(profileDir, { recursive: true });
const servers = new Map<string, RunningService>();
for (const m of modes) servers.set(m, await start(m));
const totals = new Map<string, { service: number; generator: number; lifecycles: number; seconds: number; other: number }>();
try {
  for (let round = 1; round <= Number(opt.rounds); round++) {
    for (const m of modes) {
      const svc = servers.get(m)!;
      const p = await runPhase(svc, '(no database)', {
        kind: 'lean', rootUrl: svc.rootUrl, credentials: svc.credentials, taskQueueId: 'bench/x',
        connections: Number(opt.connections), durationSec: Number(opt.duration), warmupSec: Number(opt.warmup),
        samples: 0, waiters: 0, sharedGroup: false, ...(opt.rate ? { rate: Number(opt.rate) } : {}),
      }, opt.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}http-cost-generator`] : []);
      const r = p.result;
      const per = (x: number) => (x * r.seconds * 1000) / r.lifecycles;
      process.stdout.write(
        `round ${round} ${m.padEnd(9)} ${(r.lifecycles / r.seconds).toFixed(0).padStart(5)} lifecycles/s (${r.errors} errors)  ` +
          `CPU per lifecycle: server ${per(p.cpu.service).toFixed(3)} ms, generator ${per(p.cpu.generator).toFixed(3)} ms  ` +
          `(other processes ${Math.round(p.cpu.other * 100)}%)${r.firstError ? `  first error: ${r.firstError}` : ''}\n`,
      );
      const t = totals.get(m) ?? { service: 0, generator: 0, lifecycles: 0, seconds: 0, other: 0 };
      t.service += p.cpu.service * r.seconds;
      t.generator += p.cpu.generator * r.seconds;
      t.other += p.cpu.other * r.seconds;
      t.lifecycles += r.lifecycles;
      t.seconds += r.seconds;
      totals.set(m, t);
    }
  }
} finally {
  for (const s of servers.values()) await s.stop();
}
process.stdout.write('\nover all rounds, CPU per lifecycle (3 requests)\n');
for (const [m, t] of totals) {
  process.stdout.write(
    `  ${m.padEnd(9)} server ${((t.service * 1000) / t.lifecycles).toFixed(3)} ms · generator ${((t.generator * 1000) / t.lifecycles).toFixed(3)} ms` +
      ` · ${(t.lifecycles / t.seconds).toFixed(0)} lifecycles/s · other processes ${Math.round((t.other / t.seconds) * 100)}%\n`,
  );
}
if (opt.profile) process.stdout.write(`profiles in ${profileDir}\n`);
