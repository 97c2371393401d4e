// Where a phase's CPU went: this process, the PostgreSQL backends of its database, RabbitMQ, a
// service child, and everything else on the box ("other": a noisy run shows there).
import { readdirSync, readFileSync } from 'node:fs';
import { machineBusySec, postgresCpuSec, processCpuSec } from '../lifecycle/procstat.js';

function rabbitPid(): number | undefined {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/comm`, 'utf8').trim() === 'beam.smp') return Number(name);
    } catch {
      // gone
    }
  }
  return undefined;
}

export interface CpuWindow {
  stop(): string;
}

export function cpuWindow(database: string, servicePid?: number): CpuWindow {
  const rabbit = rabbitPid();
  const sample = () => ({
    self: processCpuSec(process.pid),
    service: servicePid ? processCpuSec(servicePid) : 0,
    pg: postgresCpuSec(database),
    rabbit: rabbit ? processCpuSec(rabbit) : 0,
    busy: machineBusySec(),
    at: performance.now(),
  });
  const a = sample();
  return {
    stop() {
      const b = sample();
      const sec = (b.at - a.at) / 1000;
      const d = (k: keyof typeof a) => (b[k] - a[k]) / sec;
      const other = d('busy') - d('self') - d('service') - d('pg') - d('rabbit');
      const parts = [`bench ${d('self').toFixed(2)}`, ...(servicePid ? [`service ${d('service').toFixed(2)}`] : []), `postgres ${d('pg').toFixed(2)}`, `rabbitmq ${d('rabbit').toFixed(2)}`, `other ${other.toFixed(2)}`];
      return `cpu (cores busy of 2): ${parts.join(', ')}`;
    },
  };
}
