// Two service processes on one database run every background loop at once: this test's service and
// a `conveyor background` child process. Claim expiry, deadlines and dependency resolution must
// each make every transition exactly once — counted in runs and in the outbox.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { cloneUnscheduled, create, inParallel, messagesByTask, until } from './harness/graph.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, uniqueQueue } from './harness/tasks.js';

describe('loops on two processes', () => {
  let q: TestQueue;
  let child: ChildProcess;
  let childLog = '';
  before(async () => {
    q = await startTestQueue({ taskClaimTimeoutSec: 1, claimWorkTimeoutSec: 1, dependencyBatchSize: 100 });
    child = spawn(process.execPath, ['--import', 'tsx', 'services/queue/src/main.ts', 'background'], {
      env: {
        ...process.env,
        DATABASE_URL: q.config.databaseUrl,
        EXCHANGE_PREFIX: q.config.exchangePrefix,
        ROOT_ACCESS_TOKEN: q.config.rootAccessToken,
        TASK_CLAIM_TIMEOUT: '1',
        DEPENDENCY_BATCH_SIZE: '100',
        DB_POOL_SIZE: '5',
        LOG_LEVEL: 'warn',
        AMQP_URL: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d) => (childLog += d));
    child.stderr!.on('data', (d) => (childLog += d));
    // both processes LISTEN for dependency work once their loops run
    await until('the child process running its loops', async () => {
      const r = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND query = 'LISTEN conveyor_dependencies'`.execute(q.service.ctx.db);
      return r.rows[0]!.n >= 2;
    }, 30_000);
  });
  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await q?.stop();
  });
  const db = () => q.service.ctx.db;

  const assertChildQuiet = () => assert.doesNotMatch(childLog, /"level":(50|60)/, `the child logged errors:\n${childLog}`);

  it('expires each of 100 claims exactly once', async () => {
    const taskQueueId = uniqueQueue();
    const ids = await inParallel(Array.from({ length: 100 }), 8, () => create(q, { taskQueueId, retries: 1 }));
    let claimed = 0;
    while (claimed < ids.length) claimed += (await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w', tasks: 32 })).tasks.length;

    await until('every claim expired and retried', async () => {
      const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM runs WHERE task_id = ANY(${ids}) AND reason_resolved = 'claim-expired'`.execute(db());
      return r.rows[0]!.n >= ids.length;
    });
    const runs = await sql<{ task_id: string; n: number }>`
      SELECT task_id, count(*)::int AS n FROM runs WHERE task_id = ANY(${ids}) GROUP BY task_id`.execute(db());
    // run 1 may itself be claimed and expire later; what matters is no run was resolved twice
    const exceptions = await messagesByTask(db(), 'task-exception');
    for (const id of ids) {
      const byRun = new Map<number, number>();
      for (const m of exceptions.get(id) ?? []) byRun.set(m.runId, (byRun.get(m.runId) ?? 0) + 1);
      assert.equal(byRun.get(0), 1, `one task-exception for run 0 of ${id}`);
    }
    assert.ok(runs.rows.every((r) => r.n === 2));
    const pending = await messagesByTask(db(), 'task-pending');
    assert.ok(ids.every((id) => pending.get(id)?.filter((m) => m.runId === 1).length === 1));
    assertChildQuiet();
  });

  it('resolves each of 170 deadlines exactly once', async () => {
    // far enough ahead to create them all on a loaded machine
    const deadline = new Date(Date.now() + 4000).toJSON();
    const blocker = await create(q, { taskQueueId: uniqueQueue() });
    // 150 unscheduled behind a task that never resolves, 20 pending
    const template = await create(q, { taskQueueId: uniqueQueue(), deadline, dependencies: [blocker] });
    const blocked = [template, ...Array.from({ length: 149 }, () => slugid())];
    await cloneUnscheduled(db(), template, blocked.slice(1).map((taskId) => ({ taskId, dependencies: [blocker] })));
    const pending = await inParallel(Array.from({ length: 20 }), 10, () => create(q, { taskQueueId: uniqueQueue(), deadline }));
    const ids = [...blocked, ...pending];
    await until('every deadline resolved', async () => {
      const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM runs WHERE task_id = ANY(${ids}) AND reason_resolved = 'deadline-exceeded'`.execute(db());
      return r.rows[0]!.n >= ids.length;
    });
    const runs = await sql<{ n: number }>`SELECT count(*)::int AS n FROM runs WHERE task_id = ANY(${ids})`.execute(db());
    assert.equal(runs.rows[0]!.n, ids.length);
    const exceptions = await messagesByTask(db(), 'task-exception');
    assert.ok(ids.every((id) => exceptions.get(id)?.length === 1));
    assertChildQuiet();
  });

  it('unblocks 4 × 1,000 shared dependents of four tasks resolving together, each exactly once', async () => {
    const roots = await inParallel(Array.from({ length: 4 }), 4, () => create(q, { taskQueueId: uniqueQueue() }));
    // every dependent waits for all four roots: their resolutions meet on the same rows
    const template = await create(q, { taskQueueId: uniqueQueue(), dependencies: roots, requires: 'all-resolved' });
    const dependents = [template, ...Array.from({ length: 3999 }, () => slugid())];
    await cloneUnscheduled(db(), template, dependents.slice(1).map((taskId) => ({ taskId, dependencies: roots })));

    await Promise.all(roots.map((root) => q.queue().cancelTask(root)));
    await until('all dependents pending', async () => {
      const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM runs WHERE task_id = ANY(${dependents})`.execute(db());
      return r.rows[0]!.n >= dependents.length;
    }, 30_000);
    const runs = await sql<{ n: number }>`SELECT count(*)::int AS n FROM runs WHERE task_id = ANY(${dependents})`.execute(db());
    assert.equal(runs.rows[0]!.n, dependents.length);
    const pending = await messagesByTask(db(), 'task-pending');
    assert.ok(dependents.every((id) => pending.get(id)?.length === 1));
    await until('the work table drained', async () => {
      const left = await sql<{ n: number }>`SELECT count(*)::int AS n FROM resolved_tasks_queue`.execute(db());
      return left.rows[0]!.n === 0;
    });
    assertChildQuiet();
  });
});
