// How fast this host's cores are right now, so that runs on different days can be compared.
//
// The box the figures come from is a VM whose speed changes from day to day (the same commit gave
// ~950 lifecycles/s one day and ~500 the next, with the CPU per lifecycle of every process doubled
// alike). "Other processes" does not show that: the slowness is the host's, not the box's. A
// second of the work the service does most per request — an HMAC-SHA256 of a short string (Hawk)
// and a JSON parse and serialisation of a task-sized object — measured before the service starts
// puts a number on it. Compare it only between runs on the same Node.js version: their V8 and
// OpenSSL differ (on one day: 208k HMACs/s on Node 20, 281k on 22, 222k on 24).
import { createHmac } from 'node:crypto';

export interface HostSpeed {
  /** HMAC-SHA256 digests of a Hawk-sized string per second, one core */
  hmacPerSec: number;
  /** JSON.parse + JSON.stringify of a task-sized object per second, one core */
  jsonPerSec: number;
}

const task = JSON.stringify({
  provisionerId: 'bench', workerType: 'lean', schedulerId: '-', taskGroupId: 'fW1nRzs1Q2yNvFsMNlOPmA',
  dependencies: [], requires: 'all-completed', routes: ['index.a.b'], priority: 'lowest', retries: 5,
  created: '2026-11-23T10:00:00.000Z', deadline: '2026-11-23T11:00:00.000Z', expires: '2027-11-23T10:00:00.000Z',
  scopes: [], payload: { command: ['true'], maxRunTime: 600 }, tags: {}, extra: {},
  metadata: { name: 'bench', description: 'lifecycle bench', owner: 'bench@example.com', source: 'https://example.com/bench' },
});

function rate(seconds: number, step: (i: number) => void): number {
  const until = performance.now() + seconds * 1000;
  let n = 0;
  while (performance.now() < until) {
    for (let i = 0; i < 500; i++) step(i);
    n += 500;
  }
  return n / seconds;
}

export function measureHostSpeed(seconds = 0.5): HostSpeed {
  let sink = 0;
  // a short warm-up so the first figure is not the JIT's
  rate(0.1, (i) => (sink += createHmac('sha256', 'key').update(`hawk.1.header\n${i}\n`).digest('base64').length));
  const hmacPerSec = rate(seconds, (i) => (sink += createHmac('sha256', 'key').update(`hawk.1.header\n${i}\nPOST\n/api/queue/v1/task\n`).digest('base64').length));
  const jsonPerSec = rate(seconds, () => (sink += JSON.stringify(JSON.parse(task)).length));
  if (sink < 0) throw new Error('unreachable');
  return { hmacPerSec, jsonPerSec };
}

export function formatHostSpeed(s: HostSpeed): string {
  return `host speed         ${(s.hmacPerSec / 1000).toFixed(0)}k HMAC-SHA256/s · ${(s.jsonPerSec / 1000).toFixed(0)}k task JSON round trips/s (one core, measured before the service starts)`;
}
