// The generic worker against a real queue: a command that passes, one that fails, one that runs
// over maxRunTime, a malformed payload; its live log readable while the task runs and complete
// after; listed files uploaded; the environment and directory it gets.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Worker } from '@conveyor/worker';
import { loadWorkerConfig, startGenericWorker } from '@conveyor/generic-worker';
import { isAlive } from './harness/processes.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { taskExchanges } from './harness/messages.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { waitFor } from './harness/wait.js';

describe('generic worker', () => {
  let q: TestQueue;
  let worker: Worker;
  let taskQueueId: string;
  const scratch = mkdtempSync(join(tmpdir(), 'generic-worker-test-'));

  before(async () => {
    q = await startTestQueue();
    taskQueueId = uniqueQueue();
    const config = loadWorkerConfig({}, {
      rootUrl: q.rootUrl,
      clientId: q.credentials.clientId,
      accessToken: q.credentials.accessToken,
      taskQueueId,
      workerGroup: 'tests',
      workerId: 'generic-1',
      capacity: 4,
      liveLogIntervalMs: 100,
    });
    worker = startGenericWorker(config);
  });
  after(async () => {
    await worker?.stop({ graceMs: 0 });
    await q?.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  async function submit(payload: unknown, extra: Record<string, unknown> = {}): Promise<string> {
    const taskId = slugid();
    await q.queue().createTask(taskId, taskDef({ taskQueueId, payload, ...extra }));
    return taskId;
  }

  async function resolved(taskId: string, timeoutMs = 15_000) {
    return waitFor(`task ${taskId} resolved`, async () => {
      const { status } = await q.queue().status(taskId);
      return ['completed', 'failed', 'exception'].includes(status.state) ? status : undefined;
    }, { timeoutMs, everyMs: 50 });
  }

  /** An artifact's bytes as an anonymous reader gets them (public/ names), or undefined if absent. */
  async function artifact(taskId: string, name: string, runId = 0): Promise<string | undefined> {
    const res = await fetch(`${q.rootUrl}/api/queue/v1/task/${taskId}/runs/${runId}/artifacts/${encodeURIComponent(name)}`);
    if (res.status === 404) return undefined;
    assert.equal(res.status, 200, `GET ${name}: ${res.status} ${await res.clone().text()}`);
    return res.text();
  }

  it('runs a passing command: completed, its stdout and stderr in public/logs/live.log', async () => {
    const taskId = await submit({ command: ['sh', '-c', 'echo to-stdout; echo to-stderr >&2; echo stdout-again'], maxRunTime: 30 });
    const status = await resolved(taskId);
    assert.equal(`${status.state}/${status.runs[0].reasonResolved}`, 'completed/completed');
    const log = await artifact(taskId, 'public/logs/live.log');
    // one file for both streams: lines stay in the order the command wrote them
    assert.match(log!, /^to-stdout\nto-stderr\nstdout-again$/m);
    assert.match(log!, /exited with code 0/);
    const exchanges = await taskExchanges(q.service.ctx.db, taskId);
    assert.deepEqual(exchanges.filter((e) => e !== 'artifact-created'), ['task-defined', 'task-pending', 'task-running', 'task-completed']);
    assert.ok(exchanges.includes('artifact-created'));
    // the log was complete before the task resolved
    assert.ok(exchanges.lastIndexOf('artifact-created') < exchanges.indexOf('task-completed'));
  });

  it('runs a failing command: failed, with the exit code in the log', async () => {
    const taskId = await submit({ command: 'echo about to fail; exit 3', maxRunTime: 30 });
    const status = await resolved(taskId);
    assert.equal(`${status.state}/${status.runs[0].reasonResolved}`, 'failed/failed');
    const log = await artifact(taskId, 'public/logs/live.log');
    assert.match(log!, /about to fail/);
    assert.match(log!, /exited with code 3/);
  });

  it('fails a command that is not found', async () => {
    const taskId = await submit({ command: ['/nonexistent/program'], maxRunTime: 30 });
    const status = await resolved(taskId);
    assert.equal(status.state, 'failed');
    assert.match((await artifact(taskId, 'public/logs/live.log'))!, /could not be started/);
  });

  it('kills a command over maxRunTime (its whole process group) and fails the task', async () => {
    const pidFile = join(scratch, `pid-${slugid()}`);
    // the shell starts a background sleep: the group kill must take both
    const taskId = await submit({ command: `sleep 60 & echo $! > ${pidFile}; echo started; wait`, maxRunTime: 1 });
    const started = Date.now();
    const status = await resolved(taskId);
    assert.ok(Date.now() - started < 8000, `took ${Date.now() - started} ms`);
    assert.equal(`${status.state}/${status.runs[0].reasonResolved}`, 'failed/failed');
    const log = await artifact(taskId, 'public/logs/live.log');
    assert.match(log!, /started/);
    assert.match(log!, /exceeded maxRunTime \(1 s\) and was killed/);
    const pid = Number((await import('node:fs')).readFileSync(pidFile, 'utf8'));
    await waitFor('the background sleep is gone', () => !isAlive(pid));
  });

  it('resolves a payload that does not match the schema as exception/malformed-payload', async () => {
    const taskId = await submit({ command: 42, maxRunTime: 'long', extra: true });
    const status = await resolved(taskId);
    assert.equal(`${status.state}/${status.runs[0].reasonResolved}`, 'exception/malformed-payload');
    assert.equal(status.runs.length, 1, 'not retried');
    const log = await artifact(taskId, 'public/logs/live.log');
    assert.match(log!, /malformed payload/);
    assert.match(log!, /payload\.command/);
    assert.match(log!, /payload\.maxRunTime/);
    assert.match(log!, /extra/);
  });

  it('serves the live log while the command runs, and the whole log after', async () => {
    const go = join(scratch, `go-${slugid()}`);
    const taskId = await submit({ command: `echo first-part; while [ ! -f ${go} ]; do sleep 0.05; done; echo second-part`, maxRunTime: 60 });
    const early = await waitFor('first part of the log', async () => {
      const text = await artifact(taskId, 'public/logs/live.log');
      return text && /^first-part$/m.test(text) ? text : undefined;
    });
    assert.equal((await q.queue().status(taskId)).status.state, 'running');
    assert.doesNotMatch(early, /^second-part$/m);
    writeFileSync(go, '');
    const status = await resolved(taskId);
    assert.equal(status.state, 'completed');
    const log = await artifact(taskId, 'public/logs/live.log');
    assert.match(log!, /^first-part\nsecond-part$/m);
  });

  it('uploads the files listed in payload.artifacts; a missing one fails the task with an error artifact', async () => {
    const taskId = await submit({
      command: 'mkdir -p out && printf "%s" "report body" > out/report.txt',
      artifacts: [{ name: 'public/report.txt', path: 'out/report.txt', type: 'file' }],
      maxRunTime: 30,
    });
    assert.equal((await resolved(taskId)).state, 'completed');
    assert.equal(await artifact(taskId, 'public/report.txt'), 'report body');
    const info = await q.queue().artifactInfo(taskId, 0, 'public/report.txt');
    assert.equal(info.contentType, 'text/plain; charset=utf-8');

    const missing = await submit({ command: 'true', artifacts: [{ name: 'public/nothing.bin', path: 'nothing.bin', type: 'file' }], maxRunTime: 30 });
    assert.equal((await resolved(missing)).state, 'failed');
    const res = await fetch(`${q.rootUrl}/api/queue/v1/task/${missing}/runs/0/artifacts/public%2Fnothing.bin`);
    assert.equal(res.status, 424);
    assert.equal(((await res.json()) as { reason: string }).reason, 'file-missing-on-worker');
  });

  it('gives the command payload.env over a minimal environment, in a directory removed afterwards', async () => {
    const taskId = await submit({ command: ['sh', '-c', 'echo "dir=$(pwd)"; echo "greeting=$GREETING"; env'], env: { GREETING: 'hi there' }, maxRunTime: 30 });
    assert.equal((await resolved(taskId)).state, 'completed');
    const log = (await artifact(taskId, 'public/logs/live.log'))!;
    assert.match(log, /greeting=hi there/);
    assert.match(log, new RegExp(`TASK_ID=${taskId}`));
    assert.doesNotMatch(log, new RegExp(q.credentials.accessToken), "the worker's credentials never reach a task");
    const dir = /dir=(.*)/.exec(log)![1]!;
    assert.ok(!existsSync(dir), `${dir} was removed`);
    assert.ok(!existsSync(`${dir}.log`), 'and so was its log file');
  });

  it('removes the task directory whatever the command left in it', async () => {
    const empty = await submit({ command: 'pwd', maxRunTime: 30 });
    const full = await submit({ command: 'pwd; mkdir -p a/b && echo x > a/b/file && echo y > top', maxRunTime: 30 });
    for (const taskId of [empty, full]) {
      assert.equal((await resolved(taskId)).state, 'completed');
      const dir = /^(\/.*conveyor-task-.*)$/m.exec((await artifact(taskId, 'public/logs/live.log'))!)![1]!;
      assert.ok(!existsSync(dir), `${dir} was removed`);
      assert.ok(!existsSync(`${dir}.log`), 'and so was its log file');
    }
  });
});
