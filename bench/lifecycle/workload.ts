// What the load generator does: the create → claimWork → reportCompleted lifecycle (lean client or
// taskcluster-client), and the claimWork hand-off measurement.
import { performance } from 'node:perf_hooks';
import * as slugid from 'slugid';
import taskcluster from 'taskcluster-client';
import { LeanClient, type Credentials } from './lean-client.js';
import { Samples, type LatencySummary } from './stats.js';

export interface Job {
  kind: 'lean' | 'official' | 'handoff';
  rootUrl: string;
  credentials: Credentials;
  taskQueueId: string;
  connections: number;
  /** measured seconds (lean, official), after warmupSec */
  durationSec: number;
  warmupSec: number;
  /** hand-off: tasks created one at a time, and long-polls kept waiting */
  samples: number;
  waiters: number;
  /** one task group for every task (contended group row) instead of a group per task */
  sharedGroup: boolean;
  /** lifecycles started per second at most (all loops together); default: as fast as they go */
  rate?: number;
}

export interface JobResult {
  kind: Job['kind'];
  lifecycles: number;
  seconds: number;
  errors: number;
  firstError?: string;
  calls: Record<string, LatencySummary>;
  handoff?: LatencySummary;
  /** CPU this generator process used during the measured part, in seconds */
  cpuSec: number;
}

export function taskDefinition(job: Job, groupId: string | undefined): Record<string, unknown> {
  const now = Date.now();
  return {
    taskQueueId: job.taskQueueId,
    ...(groupId ? { taskGroupId: groupId } : {}),
    created: new Date(now).toISOString(),
    deadline: new Date(now + 3600_000).toISOString(),
    payload: { command: ['true'] },
    metadata: { name: 'bench task', description: 'bench/lifecycle', owner: 'bench@example.com', source: 'https://example.com/bench' },
  };
}

interface ClaimResponse {
  tasks: Array<{ status: { taskId: string; runs: Array<{ scheduled: string }> }; runId: number; credentials: Credentials }>;
}

type Lifecycle = (calls: Record<string, Samples> | undefined) => Promise<void>;

/** Called when the measured window opens and closes (the orchestrator samples CPU there). */
export interface WindowHooks {
  start(): void;
  end(): void;
}
const noHooks: WindowHooks = { start() {}, end() {} };

/** Runs `connections` lifecycle loops for warmup + duration; counts lifecycles finished inside the window. */
async function drive(job: Job, hooks: WindowHooks, lifecycle: Lifecycle): Promise<JobResult> {
  const calls = { createTask: new Samples(), claimWork: new Samples(), reportCompleted: new Samples() };
  let measuring = false;
  let stop = false;
  let lifecycles = 0;
  let errors = 0;
  let firstError: string | undefined;
  // With a rate, each lifecycle takes the next free start slot: CPU per lifecycle is then
  // compared at the same rate, not at whatever rate a busy box allowed.
  let nextSlot = performance.now();
  const loop = async () => {
    while (!stop) {
      if (job.rate) {
        const now = performance.now();
        nextSlot = Math.max(nextSlot + 1000 / job.rate, now);
        if (nextSlot > now) await new Promise((r) => setTimeout(r, nextSlot - now));
        if (stop) break;
      }
      const wasMeasuring = measuring;
      try {
        await lifecycle(wasMeasuring ? calls : undefined);
        if (wasMeasuring && measuring) lifecycles += 1;
      } catch (err) {
        errors += 1;
        firstError ??= String((err as Error).message ?? err);
      }
    }
  };
  const loops = Array.from({ length: job.connections }, loop);
  await new Promise((r) => setTimeout(r, job.warmupSec * 1000));
  hooks.start();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  await new Promise((r) => setTimeout(r, job.durationSec * 1000));
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  hooks.end();
  stop = true;
  await Promise.all(loops);
  return {
    kind: job.kind,
    lifecycles,
    seconds,
    errors,
    ...(firstError ? { firstError } : {}),
    calls: Object.fromEntries(Object.entries(calls).map(([k, s]) => [k, s.summary()])),
    cpuSec: (cpu.user + cpu.system) / 1e6,
  };
}

async function timed<T>(samples: Samples | undefined, fn: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const out = await fn();
  samples?.add(performance.now() - t);
  return out;
}

const worker = (i: number) => ({ workerGroup: 'bench', workerId: `w${i}`, tasks: 1 });

export async function runLean(job: Job, hooks = noHooks): Promise<JobResult> {
  const client = new LeanClient(job.rootUrl, job.connections);
  const group = job.sharedGroup ? slugid.nice() : undefined;
  let n = 0;
  try {
    return await drive(job, hooks, async (calls) => {
      const taskId = slugid.nice();
      await timed(calls?.createTask, () => client.send('PUT', `/task/${taskId}`, job.credentials, taskDefinition(job, group)));
      const claim = await timed(calls?.claimWork, () =>
        client.call<ClaimResponse>('POST', `/claim-work/${job.taskQueueId}`, job.credentials, worker(n++ % 50)),
      );
      // On a shared queue a claim can hand back another loop's task; any claimed task is completed.
      const c = claim.tasks[0];
      if (!c) throw new Error('claimWork returned no task although one was pending');
      await timed(calls?.reportCompleted, () =>
        client.send('POST', `/task/${c.status.taskId}/runs/${c.runId}/completed`, c.credentials),
      );
    });
  } finally {
    client.close();
  }
}

export async function runOfficial(job: Job, hooks = noHooks): Promise<JobResult> {
  const queue = new taskcluster.Queue({ rootUrl: job.rootUrl, credentials: job.credentials, retries: 0 });
  const group = job.sharedGroup ? slugid.nice() : undefined;
  let n = 0;
  return drive(job, hooks, async (calls) => {
    const taskId = slugid.nice();
    await timed(calls?.createTask, () => queue.createTask(taskId, taskDefinition(job, group)));
    const claim: ClaimResponse = await timed(calls?.claimWork, () => queue.claimWork(job.taskQueueId, worker(n++ % 50)));
    const c = claim.tasks[0];
    if (!c) throw new Error('claimWork returned no task although one was pending');
    const asWorker = new taskcluster.Queue({ rootUrl: job.rootUrl, credentials: c.credentials, retries: 0 });
    await timed(calls?.reportCompleted, () => asWorker.reportCompleted(c.status.taskId, c.runId));
  });
}

/**
 * Hand-off latency: `waiters` claimWork long-polls wait on an empty queue; tasks are created one at
 * a time, and each sample is the time from the run's `scheduled` (stamped by the service inside the
 * createTask transaction, before commit) to the claim response reaching this process. Service and
 * generator share the machine's clock, so the two timestamps are comparable.
 */
export async function runHandoff(job: Job, hooks = noHooks): Promise<JobResult> {
  const client = new LeanClient(job.rootUrl, job.waiters + 2);
  const handoff = new Samples();
  let stopped = false;
  let received: ((taskId: string) => void) | undefined;
  let errors = 0;
  let firstError: string | undefined;
  const waiterLoop = async (i: number) => {
    while (!stopped) {
      try {
        const claim = await client.call<ClaimResponse>('POST', `/claim-work/${job.taskQueueId}`, job.credentials, worker(i));
        const arrived = performance.timeOrigin + performance.now();
        for (const c of claim.tasks) {
          handoff.add(arrived - Date.parse(c.status.runs[c.runId]!.scheduled));
          received?.(c.status.taskId);
          await client.call('POST', `/task/${c.status.taskId}/runs/${c.runId}/completed`, c.credentials);
        }
      } catch (err) {
        if (stopped) return; // closing the agent ends the open long-polls
        errors += 1;
        firstError ??= String((err as Error).message ?? err);
        // a service that went away answers at once: don't retry at a full core
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const loops = Array.from({ length: job.waiters }, (_, i) => waiterLoop(i));
  // let the long-polls reach the service and register before the first task appears
  await new Promise((r) => setTimeout(r, 500));
  hooks.start();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < job.samples; i++) {
    const taskId = slugid.nice();
    const got = new Promise<void>((resolve) => {
      received = (id) => {
        if (id === taskId) resolve();
      };
    });
    await client.call('PUT', `/task/${taskId}`, job.credentials, taskDefinition(job, undefined));
    // a long-poll re-polls every CLAIM_WORK_TIMEOUT (20 s): a task still unclaimed after 30 s is
    // lost to the waiters, and the run must fail rather than wait for ever
    let timer: NodeJS.Timeout | undefined;
    const lost = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`task ${taskId} was not handed to a waiting claimWork within 30 s`)), 30_000);
    });
    try {
      await Promise.race([got, lost]);
    } finally {
      clearTimeout(timer);
    }
    // give the waiter that answered time to re-open its long-poll
    await new Promise((r) => setTimeout(r, 5));
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  hooks.end();
  stopped = true;
  client.close();
  await Promise.allSettled(loops);
  return {
    kind: 'handoff',
    lifecycles: job.samples,
    seconds,
    errors,
    ...(firstError ? { firstError } : {}),
    calls: {},
    handoff: handoff.summary(),
    cpuSec: (cpu.user + cpu.system) / 1e6,
  };
}
