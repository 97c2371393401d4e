// One measured phase: a load-generator process runs a job against a service while the CPU of the
// service, its PostgreSQL backends, the generator and everything else is sampled around the
// generator's measured window.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { machineBusySec, postgresCpuByPid, postgresCpuDelta, processCpuSec } from './procstat.js';
import type { RunningService } from './service.js';
import { latencyLine } from './stats.js';
import type { Job, JobResult } from './workload.js';

const generatorTs = fileURLToPath(new URL('./generator.ts', import.meta.url));

interface Window {
  serviceCpu: number;
  pgCpu: Map<number, number>;
  busy: number;
}

function sampleWindow(pid: number, database: string): Window {
  return { serviceCpu: processCpuSec(pid), pgCpu: postgresCpuByPid(database), busy: machineBusySec() };
}

export interface Phase {
  result: JobResult;
  cpu: { service: number; postgres: number; generator: number; other: number };
}

/** `nodeArgs`: extra node flags of the generator process, e.g. --cpu-prof. */
export async function runPhase(svc: RunningService, database: string, job: Job, nodeArgs: string[] = []): Promise<Phase> {
  const child = fork(generatorTs, [], { execArgv: [...nodeArgs, '--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let w0: Window | undefined;
  let w1: Window | undefined;
  const result = await new Promise<JobResult>((resolve, reject) => {
    child.on('message', (m: { window?: 'start' | 'end'; result?: JobResult; error?: string }) => {
      if (m.window === 'start') w0 = sampleWindow(svc.pid, database);
      else if (m.window === 'end') w1 = sampleWindow(svc.pid, database);
      else if (m.result) resolve(m.result);
      else if (m.error) reject(new Error(`load generator failed: ${m.error}`));
    });
    child.once('exit', (code) => reject(new Error(`load generator exited with ${code} before reporting`)));
    child.send(job);
  });
  const s = result.seconds;
  const service = (w1!.serviceCpu - w0!.serviceCpu) / s;
  const postgres = postgresCpuDelta(w0!.pgCpu, w1!.pgCpu) / s;
  const generator = result.cpuSec / s;
  const other = Math.max(0, (w1!.busy - w0!.busy) / s - service - postgres - generator);
  return { result, cpu: { service, postgres, generator, other } };
}

export const pct = (x: number) => `${Math.round(x * 100)}%`;

export function printPhase(title: string, p: Phase): void {
  const r = p.result;
  const lines = [`\n${title}`];
  if (r.kind !== 'handoff') {
    lines.push(`  lifecycles/s       ${(r.lifecycles / r.seconds).toFixed(0)}   (${r.lifecycles} in ${r.seconds.toFixed(1)} s, ${r.errors} errors)`);
    for (const [name, s] of Object.entries(r.calls)) lines.push(`  ${latencyLine(name, s)}`);
  } else {
    lines.push(`  ${latencyLine('hand-off', r.handoff!)}   (${r.errors} errors)`);
  }
  if (r.firstError) lines.push(`  first error: ${r.firstError}`);
  const c = p.cpu;
  lines.push(
    `  CPU (cores)        service ${pct(c.service)} · PostgreSQL ${pct(c.postgres)} · generator ${pct(c.generator)} · other processes ${pct(c.other)}`,
  );
  if (r.kind !== 'handoff' && r.lifecycles > 0) {
    const per = (x: number) => `${((x * r.seconds * 1000) / r.lifecycles).toFixed(2)} ms`;
    lines.push(`  CPU per lifecycle  service ${per(c.service)} · PostgreSQL ${per(c.postgres)} · generator ${per(c.generator)}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

