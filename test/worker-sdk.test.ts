// The worker SDK against a real queue service: capacity, reclaim past the claim timeout, cancel
// aborting the handler, results and their events, and shutdown handing work back as worker-shutdown.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { createWorker, TaskAborted, type RunOutcome, type TaskHandler, type Worker, type WorkerOptions } from '@conveyor/worker';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { taskExchanges } from './harness/messages.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { waitFor } from './harness/wait.js';

describe('worker SDK', () => {
  let q: TestQueue;
  const workers: Worker[] = [];
  before(async () => {
    // a 2 s claim: a task that outlives it survives only through reclaims
    q = await startTestQueue({ taskClaimTimeoutSec: 2 });
  });
  after(async () => {
    await Promise.all(workers.map((w) => w.stop({ graceMs: 0 })));
    await q?.stop();
  });

  function start(taskQueueId: string, handler: TaskHandler, extra: Partial<WorkerOptions> = {}) {
    const outcomes: RunOutcome[] = [];
    const w = createWorker({
      rootUrl: q.rootUrl,
      credentials: q.credentials,
      taskQueueId,
      workerGroup: 'sdk-tests',
      workerId: `w-${Math.random().toString(36).slice(2, 8)}`,
      capacity: 1,
      handler,
      onRunDone: (o) => outcomes.push(o),
      ...extra,
    });
    workers.push(w);
    return { worker: w, outcomes };
  }

  async function createTasks(taskQueueId: string, n: number, extra: Record<string, unknown> = {}): Promise<string[]> {
    const ids = Array.from({ length: n }, () => slugid());
    for (const id of ids) await q.queue().createTask(id, taskDef({ taskQueueId, ...extra }));
    return ids;
  }

  const state = async (taskId: string) => (await q.queue().status(taskId)).status;

  it('runs at most `capacity` tasks at once and completes them all', async () => {
    const taskQueueId = uniqueQueue();
    const ids = await createTasks(taskQueueId, 6);
    let active = 0;
    let maxActive = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { worker, outcomes } = start(taskQueueId, async () => {
      active += 1;
      maxActive = Math.max(maxActive, active);
      await gate;
      active -= 1;
    }, { capacity: 2 });

    await waitFor('two tasks running', () => active === 2);
    // the worker holds two claims and asked for no more: four tasks are still pending
    const states = await Promise.all(ids.map(async (id) => (await state(id)).state));
    assert.deepEqual(states.filter((s) => s === 'running').length, 2);
    assert.deepEqual(states.filter((s) => s === 'pending').length, 4);

    release();
    await waitFor('all six reported', () => outcomes.length === 6);
    assert.equal(maxActive, 2);
    for (const id of ids) assert.equal((await state(id)).state, 'completed');
    assert.deepEqual(await taskExchanges(q.service.ctx.db, ids[0]!), ['task-defined', 'task-pending', 'task-running', 'task-completed']);
    await worker.stop();
  });

  it('reports failed, exception reasons, and a thrown error as exception/internal-error', async () => {
    const taskQueueId = uniqueQueue();
    const [ok, bad, malformed, thrown] = await createTasks(taskQueueId, 4);
    const byTask: Record<string, TaskHandler> = {
      [ok!]: async () => {},
      [bad!]: async () => ({ status: 'failed' }),
      [malformed!]: async () => ({ status: 'exception', reason: 'malformed-payload' }),
      [thrown!]: async () => {
        throw new Error('boom');
      },
    };
    const { worker, outcomes } = start(taskQueueId, (t) => byTask[t.taskId]!(t), { capacity: 4 });
    await waitFor('four reported', () => outcomes.length === 4);
    assert.ok(outcomes.every((o) => o.reported));
    const s = async (id: string) => {
      const st = await state(id);
      return `${st.state}/${st.runs[0].reasonResolved}`;
    };
    assert.equal(await s(ok!), 'completed/completed');
    assert.equal(await s(bad!), 'failed/failed');
    assert.equal(await s(malformed!), 'exception/malformed-payload');
    assert.equal(await s(thrown!), 'exception/internal-error');
    assert.equal((await state(thrown!)).runs.length, 1, 'internal-error is not retried');
    assert.deepEqual((await taskExchanges(q.service.ctx.db, bad!)).slice(-1), ['task-failed']);
    await worker.stop();
  });

  it('keeps a task alive past the claim timeout by reclaiming it', async () => {
    const taskQueueId = uniqueQueue();
    const [taskId] = await createTasks(taskQueueId, 1);
    let firstTakenUntil: Date | undefined;
    const seen = new Set<string>();
    const { worker, outcomes } = start(taskQueueId, async (t) => {
      firstTakenUntil = t.takenUntil;
      // run until the first claim is 1.5 s past and the claim was renewed at least twice
      await waitFor('claim renewed twice past the first takenUntil', () => {
        seen.add(t.takenUntil.toISOString());
        return Date.now() > firstTakenUntil!.getTime() + 1500 && seen.size >= 3;
      }, { timeoutMs: 15_000 });
      assert.ok(!t.signal.aborted);
    });
    await waitFor('reported', () => outcomes.length === 1, { timeoutMs: 20_000 });
    const st = await state(taskId!);
    assert.equal(st.state, 'completed');
    assert.equal(st.runs.length, 1, 'the claim never expired: one run');
    assert.ok(new Date(st.runs[0].takenUntil) > firstTakenUntil!, 'takenUntil moved forward');
    assert.equal(outcomes[0]!.reported, true);
    await worker.stop();
  });

  it('aborts the handler when the task is cancelled, and reports nothing', async () => {
    const taskQueueId = uniqueQueue();
    const [taskId] = await createTasks(taskQueueId, 1);
    let started = false;
    let reason: unknown;
    const { worker, outcomes } = start(taskQueueId, async (t) => {
      started = true;
      await new Promise((r) => t.signal.addEventListener('abort', r, { once: true }));
      reason = t.signal.reason;
    });
    await waitFor('handler started', () => started);
    await q.queue().cancelTask(taskId!);
    await waitFor('run done', () => outcomes.length === 1, { timeoutMs: 10_000 });
    assert.ok(reason instanceof TaskAborted);
    assert.equal((reason as TaskAborted).why, 'resolved');
    assert.equal(outcomes[0]!.reported, false);
    const st = await state(taskId!);
    assert.equal(`${st.state}/${st.runs[0].reasonResolved}`, 'exception/canceled');
    assert.deepEqual((await taskExchanges(q.service.ctx.db, taskId!)).slice(-1), ['task-exception']);
    await worker.stop();
  });

  it('stop(): finishes what fits in the grace period, hands the rest back as worker-shutdown', async () => {
    const taskQueueId = uniqueQueue();
    const [quick, slow] = await createTasks(taskQueueId, 2, { retries: 1 });
    let finishQuick!: () => void;
    const quickGate = new Promise<void>((r) => (finishQuick = r));
    let running = 0;
    const { worker, outcomes } = start(taskQueueId, async (t) => {
      running += 1;
      if (t.taskId === quick) return quickGate;
      await new Promise((r) => t.signal.addEventListener('abort', r, { once: true }));
    }, { capacity: 2 });
    await waitFor('both running', () => running === 2);
    const stopping = worker.stop({ graceMs: 1500 });
    finishQuick();
    await stopping;
    assert.equal(outcomes.length, 2);
    assert.equal((await state(quick!)).state, 'completed');
    const st = await state(slow!);
    assert.deepEqual(st.runs.map((r: any) => `${r.state}/${r.reasonResolved ?? r.reasonCreated}`), ['exception/worker-shutdown', 'pending/retry']);
    assert.deepEqual((await taskExchanges(q.service.ctx.db, slow!)).slice(-2), ['task-exception', 'task-pending']);
    // a stopped worker claims nothing more
    const [later] = await createTasks(taskQueueId, 1);
    assert.equal((await state(later!)).state, 'pending');
  });

  it('uploads artifacts and a live log that grows while the task runs (moving from memory to a file)', async () => {
    const taskQueueId = uniqueQueue();
    const [taskId] = await createTasks(taskQueueId, 1);
    const read = async (name: string) => {
      const res = await fetch(`${q.rootUrl}/api/queue/v1/task/${taskId}/runs/0/artifacts/${encodeURIComponent(name)}`);
      return res.status === 200 ? res.text() : undefined;
    };
    let midway: string | undefined;
    const line = (i: number) => `line ${String(i).padStart(4, '0')} ${'x'.repeat(40)}\n`;
    const { worker, outcomes } = start(taskQueueId, async (t) => {
      await t.uploadArtifact('public/report.json', JSON.stringify({ ok: true }), 'application/json');
      const log = t.liveLog({ intervalMs: 60_000, spillBytes: 256 });
      for (let i = 0; i < 10; i++) await log.write(line(i));
      await log.flush();
      midway = await read('public/logs/live.log');
      for (let i = 10; i < 100; i++) await log.write(line(i));
      // not closed: the SDK closes (and uploads) it before reporting
    });
    await waitFor('reported', () => outcomes.length === 1);
    assert.equal(outcomes[0]!.result?.status, 'completed');
    assert.equal(await read('public/report.json'), '{"ok":true}');
    assert.equal(midway, Array.from({ length: 10 }, (_, i) => line(i)).join(''));
    assert.equal(await read('public/logs/live.log'), Array.from({ length: 100 }, (_, i) => line(i)).join(''));
    const created = (await taskExchanges(q.service.ctx.db, taskId!)).filter((e) => e === 'artifact-created').length;
    assert.equal(created, 3, 'one artifact-created per upload: the report, the flush and the final log');
    await worker.stop();
  });

  it('a live log in a file others append to: a short task uploads it once, at the end, whole; larger ones too', async () => {
    const taskQueueId = uniqueQueue();
    const [short, large, medium] = await createTasks(taskQueueId, 3);
    const dir = mkdtempSync(join(tmpdir(), 'sdk-live-log-'));
    const read = async (taskId: string) =>
      (await fetch(`${q.rootUrl}/api/queue/v1/task/${taskId}/runs/0/artifacts/public%2Flogs%2Flive.log`)).text();
    const line = (i: number) => `line ${String(i).padStart(4, '0')} ${'x'.repeat(40)}\n`;
    const lines = (n: number) => Array.from({ length: n }, (_, i) => line(i)).join('');
    const files: string[] = [];
    const { worker, outcomes } = start(taskQueueId, async (t) => {
      const file = join(dir, `${t.taskId}.log`);
      files.push(file);
      // as the generic worker does: its own lines around a command's output appended to the file
      // large: beyond spillBytes, streamed from the file; medium: beyond the first read, within spillBytes
      const log = t.liveLog({ intervalMs: 60_000, file, ...(t.taskId === medium ? {} : { spillBytes: 1024 }) });
      await log.write('header\n');
      appendFileSync(file, t.taskId === short ? 'from the command\n' : lines(t.taskId === large ? 100 : 1000));
      await log.write('trailer\n');
    });
    try {
      await waitFor('all reported', () => outcomes.length === 3);
      assert.equal(await read(short!), 'header\nfrom the command\ntrailer\n');
      assert.equal(await read(large!), `header\n${lines(100)}trailer\n`);
      assert.equal(await read(medium!), `header\n${lines(1000)}trailer\n`);
      for (const taskId of [short!, large!, medium!]) {
        const exchanges = await taskExchanges(q.service.ctx.db, taskId);
        assert.equal(exchanges.filter((e) => e === 'artifact-created').length, 1, 'one upload, at the end');
        assert.ok(exchanges.indexOf('artifact-created') < exchanges.indexOf('task-completed'));
      }
      assert.deepEqual(files.filter((f) => existsSync(f)), [], 'the files are deleted after the final upload');
    } finally {
      await worker.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('creates a live log\'s artifact as the log is made: listed while the task runs, its uploads PUTs only', async () => {
    const taskQueueId = uniqueQueue();
    const [taskId] = await createTasks(taskQueueId, 1);
    const listed = async () => (await q.queue().listArtifacts(taskId, 0)).artifacts.map((a: any) => a.name);
    const creates = async () =>
      Number(/conveyor_http_request_duration_seconds_count\{endpoint="createArtifact",status="200"\} (\d+)/.exec(await (await fetch(`${q.rootUrl}/metrics`)).text())?.[1] ?? 0);
    const createsBefore = await creates();
    let during: string[] = [];
    const { worker, outcomes } = start(taskQueueId, async (t) => {
      const log = t.liveLog({ intervalMs: 60_000 });
      // nothing written or uploaded yet, and the artifact is there
      during = await waitFor('the log artifact to be listed', async () => ((await listed()).length > 0 ? listed() : undefined));
      await log.write('the only line\n');
    });
    try {
      await waitFor('reported', () => outcomes.length === 1);
      assert.deepEqual(during, ['public/logs/live.log']);
      const res = await fetch(`${q.rootUrl}/api/queue/v1/task/${taskId}/runs/0/artifacts/public%2Flogs%2Flive.log`);
      assert.equal(await res.text(), 'the only line\n');
      const exchanges = await taskExchanges(q.service.ctx.db, taskId!);
      assert.equal(exchanges.filter((e) => e === 'artifact-created').length, 1, 'one upload, at the end');
      assert.equal((await creates()) - createsBefore, 1, 'one createArtifact, when the log was made');
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM artifact_uploads WHERE task_id = ${taskId}`.execute(q.service.ctx.db);
      assert.equal(rows[0]!.n, 1);
    } finally {
      await worker.stop();
    }
  });

  it('SIGTERM: a worker process hands its running tasks back as worker-shutdown and exits', async () => {
    const taskQueueId = uniqueQueue();
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/sdk-worker.ts'], {
      env: { ...process.env, ROOT_URL: q.rootUrl, CLIENT_ID: q.credentials.clientId, ACCESS_TOKEN: q.credentials.accessToken, TASK_QUEUE_ID: taskQueueId },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    try {
      await waitFor('child ready', () => out.includes('ready'), { timeoutMs: 20_000 });
      const ids = await createTasks(taskQueueId, 2, { retries: 2 });
      await waitFor('both tasks started in the child', () => ids.every((id) => out.includes(`started ${id}`)));
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = await exited;
      assert.equal(code, 0);
      for (const id of ids) {
        const st = await state(id);
        assert.deepEqual(st.runs.map((r: any) => r.reasonResolved ?? r.reasonCreated), ['worker-shutdown', 'retry']);
        assert.equal(st.state, 'pending');
      }
    } finally {
      child.kill('SIGKILL');
    }
  });
});
