// bench/events: (1) relay throughput draining a backlog of outbox rows, (2) commit → consumer latency
// of every event under paced create → claim → complete load over HTTP, and (3) the lifecycle rate
// with the relay on vs off (service restarted without AMQP_URL), same load generator, same process.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import amqp from 'amqplib';
import pg from 'pg';
import pino from 'pino';
import slugid from 'slugid';
import { loadConfig } from '../../services/queue/src/config.js';
import { OutboxRelay } from '../../services/queue/src/outbox/relay.js';
import { createTestDatabase } from '../../test/harness/db.js';
import { LeanClient, type Credentials } from '../lifecycle/lean-client.js';
import { startService, type RunningService } from '../lifecycle/service.js';
import { latencyLine, Samples } from '../lifecycle/stats.js';
import { cpuWindow } from './cpu.js';

const { values: opt } = parseArgs({
  options: {
    backlog: { type: 'string', default: '100000' },
    rate: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '10' },
    inflight: { type: 'string', default: '64' },
    'ceiling-rate': { type: 'string', default: '1500' },
    batch: { type: 'string', default: '1000' },
    'no-consumer': { type: 'boolean', default: false },
    phases: { type: 'string', default: 'relay,latency,ratio' },
    'amqp-url': { type: 'string', default: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672' },
  },
});
const amqpUrl = opt['amqp-url'];
const phases = new Set(opt.phases.split(','));
const log = pino({ level: 'warn' });

async function deleteExchanges(prefix: string): Promise<void> {
  const conn = await amqp.connect(amqpUrl);
  const ch = await conn.createChannel();
  for (const e of ['task-defined', 'task-pending', 'task-running', 'artifact-created', 'task-completed', 'task-failed', 'task-exception', 'task-group-resolved', 'task-group-sealed']) {
    await ch.deleteExchange(prefix + e).catch(() => {});
  }
  await conn.close();
}

/** A consumer on every exchange of the prefix: calls onMessage with the receive time. */
async function consumer(prefix: string, onMessage: (m: amqp.ConsumeMessage, at: number) => void) {
  const conn = await amqp.connect(amqpUrl);
  const ch = await conn.createChannel();
  const q = await ch.assertQueue('', { exclusive: true });
  await ch.assertExchange(prefix + 'task-completed', 'topic', { durable: true });
  for (const e of ['task-defined', 'task-pending', 'task-running', 'task-completed', 'task-group-resolved']) {
    await ch.assertExchange(prefix + e, 'topic', { durable: true });
    await ch.bindQueue(q.queue, prefix + e, '#');
  }
  await ch.consume(q.queue, (m) => m && onMessage(m, performance.now()), { noAck: true });
  return () => conn.close();
}

async function relayPhase(): Promise<string> {
  const n = Number(opt.backlog);
  const db = await createTestDatabase();
  const prefix = `exchange/conveyor-bench-${randomBytes(4).toString('hex')}/v1/`;
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  // a realistic body: a task-completed message of a one-run task, ~1 KB
  const body = {
    version: 1, runId: 0, workerGroup: 'wg', workerId: 'worker-1', task: { tags: { project: 'bench' } },
    status: {
      taskId: 'fHQDQwLiQDKjyC2mWrjIoA', provisionerId: 'bench-prov', workerType: 'bench-wt', taskQueueId: 'bench-prov/bench-wt',
      schedulerId: '-', projectId: 'none', taskGroupId: 'fHQDQwLiQDKjyC2mWrjIoA', deadline: new Date().toISOString(),
      expires: new Date().toISOString(), retriesLeft: 5, state: 'completed',
      runs: [{ runId: 0, state: 'completed', reasonCreated: 'scheduled', reasonResolved: 'completed', workerGroup: 'wg', workerId: 'worker-1',
        takenUntil: new Date().toISOString(), scheduled: new Date().toISOString(), started: new Date().toISOString(), resolved: new Date().toISOString() }],
    },
  };
  await c.query(
    `INSERT INTO outbox (exchange, routing_key, cc, body)
     SELECT $1, 'primary.fHQDQwLiQDKjyC2mWrjIoA.0.wg.worker-1.bench-prov.bench-wt.-.fHQDQwLiQDKjyC2mWrjIoA._', ARRAY['route.index.bench'], $2::jsonb
     FROM generate_series(1, $3)`,
    [prefix + 'task-completed', JSON.stringify(body), n],
  );
  await c.query('VACUUM ANALYZE outbox');
  let received = 0;
  // without a consumer nothing is bound: the broker confirms without queueing (its ceiling)
  const close = opt['no-consumer'] ? async () => {} : await consumer(prefix, () => received++);
  const config = loadConfig({}, { databaseUrl: db.url, amqpUrl, exchangePrefix: prefix, logLevel: 'warn', relayBatchSize: Number(opt.batch) });
  const cpu = cpuWindow(db.name);
  const t0 = performance.now();
  const relay = new OutboxRelay({ config, log }).start();
  while (relay.status.published < n) await new Promise((r) => setTimeout(r, 20));
  const relaySec = (performance.now() - t0) / 1000;
  const cpuLine = cpu.stop();
  while (!opt['no-consumer'] && received < n && performance.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 20));
  const consumedSec = (performance.now() - t0) / 1000;
  await relay.stop();
  await close();
  await c.end();
  await db.drop();
  await deleteExchanges(prefix);
  return (
    `relay: ${n} rows published and marked in ${relaySec.toFixed(2)} s = ${Math.round(n / relaySec)} msg/s ` +
    `(batch ${config.relayBatchSize}); consumer had all ${received} after ${consumedSec.toFixed(2)} s\n  ${cpuLine}`
  );
}

interface LoadResult {
  created: number;
  claimed: number;
  lifecycles: number;
  seconds: number;
  errors: number;
}

/**
 * Paced load: `rate` lifecycles started per second (create → claimWork(1) → reportCompleted, as
 * bench/lifecycle does), at most `maxInflight` at once so an overloaded service is not buried.
 * `onDone` sees the response time of each call, for the latency of the events it committed.
 */
async function runLoad(svc: RunningService, rate: number, seconds: number, onDone?: (what: string, taskId: string, at: number) => void): Promise<LoadResult> {
  const maxInflight = Number(opt.inflight);
  const client = new LeanClient(svc.rootUrl, maxInflight);
  const root: Credentials = svc.credentials;
  const taskQueueId = `bench-prov/wt-${randomBytes(3).toString('hex')}`;
  const deadline = new Date(Date.now() + 3600_000).toISOString();
  let errors = 0;
  let created = 0;
  let claimed = 0;
  let completed = 0;
  let skipped = 0;
  const fail = (err: unknown) => {
    if (errors++ === 0) process.stderr.write(`first error: ${(err as Error).message}\n`);
  };
  const lifecycle = async (i: number) => {
    const taskId = slugid.nice();
    await client.call('PUT', `/task/${taskId}`, root, {
      taskQueueId, created: new Date().toISOString(), deadline, payload: {},
      metadata: { name: 'bench', description: 'bench', owner: 'bench@example.com', source: 'https://example.com' },
    });
    onDone?.('create', taskId, performance.now());
    created++;
    const r = await client.call<{ tasks: Array<{ status: { taskId: string }; runId: number; credentials: Credentials }> }>(
      'POST', `/claim-work/${encodeURIComponent(taskQueueId)}`, root, { workerGroup: 'bench', workerId: `w${i % 50}`, tasks: 1 },
    );
    const t = r.tasks[0];
    if (!t) throw new Error('claimWork returned no task although one was pending');
    onDone?.('claim', t.status.taskId, performance.now());
    claimed++;
    await client.call('POST', `/task/${t.status.taskId}/runs/${t.runId}/completed`, t.credentials);
    onDone?.('complete', t.status.taskId, performance.now());
    completed++;
  };
  const inflight = new Set<Promise<void>>();
  const t0 = performance.now();
  let started = 0;
  while (performance.now() - t0 < seconds * 1000) {
    const due = Math.floor(((performance.now() - t0) / 1000) * rate);
    for (; started < due; started++) {
      if (inflight.size >= maxInflight) {
        skipped++;
        continue;
      }
      const p = lifecycle(started).catch(fail);
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  const measured = (performance.now() - t0) / 1000;
  const done = { created, claimed, lifecycles: completed };
  await Promise.all([...inflight]);
  client.close();
  if (skipped) process.stderr.write(`${skipped} lifecycles not started: ${maxInflight} already in flight\n`);
  return { ...done, seconds: measured, errors };
}

async function latencyPhase(rate: number): Promise<string[]> {
  const db = await createTestDatabase();
  const prefix = `exchange/conveyor-bench-${randomBytes(4).toString('hex')}/v1/`;
  const svc = await startService({ databaseUrl: db.url, amqpUrl, env: { EXCHANGE_PREFIX: prefix, CLAIM_WORK_TIMEOUT: '1' } });
  // response time of the call whose transaction wrote the event ≈ its commit time (loopback: < 1 ms after)
  const committed = new Map<string, number>();
  const samples: Record<string, Samples> = { 'task-defined': new Samples(), 'task-pending': new Samples(), 'task-running': new Samples(), 'task-completed': new Samples(), 'task-group-resolved': new Samples() };
  const all = new Samples();
  const early: Array<[string, string, number]> = [];
  const record = (exchange: string, taskId: string, at: number) => {
    const step = exchange === 'task-defined' || exchange === 'task-pending' ? 'create' : exchange === 'task-running' ? 'claim' : 'complete';
    const c = committed.get(`${step} ${taskId}`);
    if (c === undefined) return void early.push([step, taskId, at]);
    samples[exchange]!.add(at - c);
    all.add(at - c);
  };
  const close = await consumer(prefix, (m, at) => {
    const exchange = m.fields.exchange.slice(prefix.length);
    const words = m.fields.routingKey.split('.');
    record(exchange, words[1]!, at); // the group of a bench task is the task itself
  });
  const cpu = cpuWindow(db.name, svc.pid);
  const result = await runLoad(svc, rate, Number(opt.duration), (what, taskId, at) => {
    committed.set(`${what} ${taskId}`, at);
  });
  const cpuLine = cpu.stop();
  // events that beat their HTTP response: latency ≤ 0 relative to the response, counted as 0
  for (const [step, taskId, at] of early) {
    const c = committed.get(`${step} ${taskId}`);
    if (c !== undefined) all.add(Math.max(0, at - c));
  }
  await new Promise((r) => setTimeout(r, 1000));
  await close();
  await svc.stop();
  await db.drop();
  await deleteExchanges(prefix);
  const lines = [
    `latency: offered ${rate} lifecycles/s for ${result.seconds.toFixed(1)} s: created ${(result.created / result.seconds).toFixed(0)}/s, ` +
      `claimed ${(result.claimed / result.seconds).toFixed(0)}/s, completed ${(result.lifecycles / result.seconds).toFixed(0)}/s (${result.errors} errors)`,
    ...Object.entries(samples).map(([k, s]) => latencyLine(`  ${k}`, s.summary())),
    latencyLine('  all events', all.summary()),
    `  ${cpuLine}`,
  ];
  return lines;
}

/** Events off vs on at saturation, in ABBA order so drifting load on the box hits both alike. */
async function ratioPhase(): Promise<string[]> {
  // offered load above what the box completes: the figure is the ceiling
  const rate = Number(opt['ceiling-rate']);
  const rates: Record<'off' | 'on', number[]> = { off: [], on: [] };
  const lines: string[] = [];
  for (const withAmqp of [false, true, true, false]) {
    const db = await createTestDatabase();
    const prefix = `exchange/conveyor-bench-${randomBytes(4).toString('hex')}/v1/`;
    const svc = await startService({ databaseUrl: db.url, ...(withAmqp ? { amqpUrl } : {}), env: { EXCHANGE_PREFIX: prefix, CLAIM_WORK_TIMEOUT: '1' } });
    const cpu = cpuWindow(db.name, svc.pid);
    const r = await runLoad(svc, rate, Number(opt.duration));
    const perSec = r.lifecycles / r.seconds;
    rates[withAmqp ? 'on' : 'off'].push(perSec);
    lines.push(`  events ${withAmqp ? 'on ' : 'off'}: ${perSec.toFixed(0)} lifecycles/s; ${cpu.stop()}`);
    await svc.stop();
    await db.drop();
    if (withAmqp) await deleteExchanges(prefix);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const [off, on] = [mean(rates.off), mean(rates.on)];
  return [
    `lifecycles/s at saturation (${opt.inflight} in flight), ABBA: events off ${off.toFixed(0)}, events on ${on.toFixed(0)} → on/off ${((on / off) * 100).toFixed(0)} %`,
    ...lines,
  ];
}

const report: string[] = [];
if (phases.has('relay')) report.push(await relayPhase());
if (phases.has('latency')) report.push(...(await latencyPhase(Number(opt.rate))));
if (phases.has('ratio')) report.push(...(await ratioPhase()));
process.stdout.write('\n' + report.join('\n') + '\n');
process.exit(0);
