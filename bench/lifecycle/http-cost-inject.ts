// The apps of http-cost-apps.ts driven in-process with fastify's inject (no sockets, no HTTP
// parsing): our request path alone, precise enough to compare small changes on a shared box.
// Lifecycles run one at a time; the figure is the process's CPU time per lifecycle, client side
// (Hawk signing, light-my-request) included, the same for every mode: compare modes, not absolutes.
// Modes alternate in rounds; each prints its median round.
//   node --import tsx bench/lifecycle/http-cost-inject.ts [--baseline DIR] [--lifecycles 2000] [--rounds 7]
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import type { FastifyInstance } from 'fastify';
import * as hawk from 'hawk';
import * as slugid from 'slugid';
import { bareApp, conveyorApp } from './http-cost-apps.js';
import { taskDefinition, type Job } from './workload.js';

const { values: opt } = parseArgs({
  options: {
    baseline: { type: 'string' },
    modes: { type: 'string', default: 'bare,conveyor' },
    lifecycles: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '7' },
  },
});

interface Creds {
  clientId: string;
  accessToken: string;
  certificate?: string;
}

const accessToken = randomBytes(24).toString('base64url');
const root: Creds = { clientId: 'root', accessToken };

function headers(method: string, path: string, creds: Creds, body?: unknown): Record<string, string> {
  const ext = creds.certificate ? Buffer.from(JSON.stringify({ certificate: JSON.parse(creds.certificate) })).toString('base64') : undefined;
  const { header } = hawk.client.header(`http://localhost:80${path}`, method, {
    credentials: { id: creds.clientId, key: creds.accessToken, algorithm: 'sha256' },
    ...(ext ? { ext } : {}),
  });
  return { authorization: header, ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
}

/** Runs `n` lifecycles; returns the CPU µs per lifecycle. */
async function lifecycles(app: FastifyInstance, n: number): Promise<number> {
  const call = async (method: 'PUT' | 'POST', path: string, creds: Creds, body?: unknown) => {
    const h = headers(method, `/api/queue/v1${path}`, creds, body);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const res = await app.inject({ method, url: `/api/queue/v1${path}`, headers: h, ...(payload ? { payload } : {}) });
    if (res.statusCode !== 200) throw new Error(`${method} ${path}: ${res.statusCode} ${res.body.slice(0, 300)}`);
    return JSON.parse(res.body) as { tasks: Array<{ status: { taskId: string }; runId: number; credentials: Creds }> };
  };
  const job = { taskQueueId: 'bench/x' } as Job;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    await call('PUT', `/task/${slugid.nice()}`, root, taskDefinition(job, undefined));
    const claim = await call('POST', '/claim-work/bench/x', root, { workerGroup: 'bench', workerId: `w${i % 50}`, tasks: 1 });
    const c = claim.tasks[0]!;
    await call('POST', `/task/${c.status.taskId}/runs/${c.runId}/completed`, c.credentials);
  }
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) / n;
}

const apps = new Map<string, FastifyInstance>();
for (const m of opt.modes.split(',')) apps.set(m, m === 'bare' ? await bareApp(accessToken) : await conveyorApp(accessToken));
if (opt.baseline) apps.set('baseline', await conveyorApp(accessToken, opt.baseline));
const samples = new Map<string, number[]>([...apps.keys()].map((m) => [m, []]));
for (const app of apps.values()) await lifecycles(app, 500); // warm up the JIT
for (let r = 0; r < Number(opt.rounds); r++) {
  for (const [m, app] of apps) samples.get(m)!.push(await lifecycles(app, Number(opt.lifecycles)));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
process.stdout.write('CPU µs per lifecycle, client included (3 requests), median of rounds [all rounds]\n');
for (const [m, xs] of samples) process.stdout.write(`  ${m.padEnd(9)} ${median(xs).toFixed(0).padStart(5)}   [${xs.map((x) => x.toFixed(0)).join(' ')}]\n`);
if (opt.baseline) {
  process.stdout.write(`  conveyor / baseline: ${(median(samples.get('conveyor')!) / median(samples.get('baseline')!)).toFixed(2)}\n`);
}
for (const app of apps.values()) await app.close();
