// CPU and memory of processes from /proc (Linux): where the machine's time went during a phase.
import { readdirSync, readFileSync } from 'node:fs';

const ticksPerSec = 100; // USER_HZ on Linux

function statFields(pid: number | string): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces: the fields after it start past the last ')'
    return [text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')), ...text.slice(text.lastIndexOf(')') + 2).split(' ')];
  } catch {
    return undefined; // the process is gone
  }
}

/** utime + stime of a process in seconds (fields 14 and 15 of /proc/<pid>/stat). */
export function processCpuSec(pid: number): number {
  const f = statFields(pid);
  return f ? (Number(f[12]) + Number(f[13])) / ticksPerSec : 0;
}

/**
 * CPU seconds of each PostgreSQL backend serving `database` (their titles name it, e.g.
 * "postgres: 15/main: postgres <database> 127.0.0.1(5432) idle"), by pid. Other users of the
 * same server are left out.
 */
export function postgresCpuByPid(database: string): Map<number, number> {
  const byPid = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(name);
    if (!f || !f[0]!.startsWith('postgres')) continue;
    let title: string;
    try {
      title = readFileSync(`/proc/${name}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (title.includes(` ${database} `)) byPid.set(Number(name), (Number(f[12]) + Number(f[13])) / ticksPerSec);
  }
  return byPid;
}

/** Total CPU seconds of the backends serving `database` (a backend that exits takes its share along). */
export function postgresCpuSec(database: string): number {
  let sum = 0;
  for (const sec of postgresCpuByPid(database).values()) sum += sec;
  return sum;
}

/** CPU used between two postgresCpuByPid samples; a backend that exited in between is not counted. */
export function postgresCpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, sec] of after) sum += sec - (before.get(pid) ?? 0);
  return sum;
}

/** Busy (non-idle) CPU seconds of the whole machine, all cores together. */
export function machineBusySec(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
  return (cpu.reduce((a, b) => a + b, 0) - idle) / ticksPerSec;
}

/** Peak and current resident set size of a process, in MB (VmHWM, VmRSS). */
export function memoryMb(pid: number): { peakMb: number; rssMb: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
    return { peakMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024 };
  } catch {
    return { peakMb: NaN, rssMb: NaN };
  }
}
