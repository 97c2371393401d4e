// Dependencies through taskcluster-client: a dependent stays unscheduled until its dependencies
// resolve the way it requires, and becomes pending (task-pending) in the transaction that resolves
// the last of them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import taskcluster from 'taskcluster-client';
import { resolverLoops } from '../services/queue/src/resolvers/index.js';
import {
  claimAndResolve, cloneUnscheduled, countIn, create, inParallel, messagesByTask, states, until,
} from './harness/graph.js';
import { outboxRows } from './harness/outbox.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';

describe('task dependencies', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue();
  });
  after(async () => {
    await q?.stop();
  });
  const db = () => q.service.ctx.db;
  const state = async (taskId: string) => (await states(db(), [taskId])).get(taskId);

  it('resolves a diamond in order', async () => {
    const taskQueueId = uniqueQueue();
    const a = await create(q, { taskQueueId });
    const b = await create(q, { taskQueueId, dependencies: [a] });
    const c = await create(q, { taskQueueId, dependencies: [a] });
    const d = await create(q, { taskQueueId, dependencies: [b, c] });
    assert.deepEqual([await state(b), await state(c), await state(d)], ['unscheduled', 'unscheduled', 'unscheduled']);

    await claimAndResolve(q, taskQueueId, 'completed', { taskId: a });
    assert.deepEqual([await state(b), await state(c), await state(d)], ['pending', 'pending', 'unscheduled']);
    const first = await claimAndResolve(q, taskQueueId);
    assert.equal(await state(d), 'unscheduled');
    await claimAndResolve(q, taskQueueId, 'completed', { taskId: first.taskId === b ? c : b });
    assert.equal(await state(d), 'pending');

    // d's task-pending was committed after the completion of its last dependency, exactly once
    const rows = await outboxRows(db());
    const lastCompleted = rows.findLastIndex((r) => r.exchange.endsWith('/task-completed') && [b, c].includes(r.routing_key.split('.')[1]!));
    const pendingD = rows.map((r, i) => [r, i] as const).filter(([r]) => r.exchange.endsWith('/task-pending') && r.routing_key.split('.')[1] === d);
    assert.equal(pendingD.length, 1);
    assert.ok(pendingD[0]![1] > lastCompleted);
    assert.equal(pendingD[0]![0].body.status.runs[0].reasonCreated, 'scheduled');
  });

  it('unblocks 2,000 dependents of one task, in bounded batches', async () => {
    const taskQueueId = uniqueQueue();
    const root = await create(q, { taskQueueId });
    const dependents = [await create(q, { taskQueueId: uniqueQueue(), dependencies: [root] })];
    while (dependents.length < 2000) dependents.push(slugid());
    await cloneUnscheduled(db(), dependents[0]!, dependents.slice(1).map((taskId) => ({ taskId, dependencies: [root] })));
    assert.equal(await countIn(db(), dependents, 'unscheduled'), 2000);

    await claimAndResolve(q, taskQueueId, 'completed', { taskId: root });
    // the resolving transaction did the first batch (DEPENDENCY_BATCH_SIZE) itself
    assert.ok((await countIn(db(), dependents, 'pending')) >= q.config.dependencyBatchSize);
    await until('all 2,000 dependents pending', async () => (await countIn(db(), dependents, 'pending')) === 2000);
    const pending = await messagesByTask(db(), 'task-pending');
    assert.ok(dependents.every((id) => pending.get(id)?.length === 1), 'one task-pending per dependent');
    await until('the work table drained', async () => {
      const left = await sql<{ n: number }>`SELECT count(*)::int AS n FROM resolved_tasks_queue`.execute(db());
      return left.rows[0]!.n === 0;
    });
  });

  it('all-completed waits for completions; all-resolved takes any resolution', async () => {
    const taskQueueId = uniqueQueue();
    const a = await create(q, { taskQueueId });
    const e = await create(q, { taskQueueId });
    const needsCompleted = await create(q, { taskQueueId: uniqueQueue(), dependencies: [a] });
    const needsResolved = await create(q, { taskQueueId: uniqueQueue(), dependencies: [a], requires: 'all-resolved' });
    const mixed = await create(q, { taskQueueId: uniqueQueue(), dependencies: [a, e], requires: 'all-resolved' });

    await claimAndResolve(q, taskQueueId, 'failed', { taskId: a });
    assert.equal(await state(needsResolved), 'pending');
    assert.equal(await state(mixed), 'unscheduled');
    await claimAndResolve(q, taskQueueId, 'exception', { taskId: e });
    assert.equal(await state(mixed), 'pending');
    // nothing left over for the loop either: the all-completed dependent of a failed task stays put
    await resolverLoops(q.service.ctx)!.dependencies.runOnce();
    assert.equal(await state(needsCompleted), 'unscheduled');

    // a rerun that completes satisfies it after all
    await q.queue().rerunTask(a);
    await claimAndResolve(q, taskQueueId, 'completed', { taskId: a });
    assert.equal(await state(needsCompleted), 'pending');
  });

  it('schedules at once a task whose dependencies completed before it was created', async () => {
    const taskQueueId = uniqueQueue();
    const a = await create(q, { taskQueueId });
    await claimAndResolve(q, taskQueueId, 'completed', { taskId: a });
    const b = await create(q, { taskQueueId, dependencies: [a] });
    assert.equal(await state(b), 'pending');
  });

  it('keeps a self-dependent task unscheduled until scheduleTask, and never schedules twice', async () => {
    const taskQueueId = uniqueQueue();
    const self = slugid();
    await q.queue().createTask(self, taskDef({ taskQueueId, dependencies: [self] }));
    assert.equal(await state(self), 'unscheduled');
    const a = await create(q, { taskQueueId });
    const b = await create(q, { taskQueueId, dependencies: [a] });
    const scheduled = await q.queue().scheduleTask(b);
    assert.equal(scheduled.status.state, 'pending');
    await q.queue().scheduleTask(self);
    assert.equal(await state(self), 'pending');
    // a's completion finds b already scheduled: no second run, no second task-pending
    await claimAndResolve(q, taskQueueId, 'completed', { taskId: a });
    const status = await q.queue().status(b);
    assert.equal(status.status.runs.length, 1);
    assert.equal((await messagesByTask(db(), 'task-pending')).get(b)!.length, 1);
  });

  it('rejects missing and too-early-expiring dependencies with 400, storing nothing', async () => {
    const missing = [slugid(), slugid()].sort();
    const a = await create(q);
    const taskId = slugid();
    await assert.rejects(q.queue().createTask(taskId, taskDef({ dependencies: [a, ...missing] })), (err: any) => {
      assert.equal(err.statusCode, 400);
      assert.equal(err.code, 'InputError');
      assert.match(err.message, /depends on tasks that do not exist/);
      assert.deepEqual([...err.body.details.missingTaskDependencies].sort(), missing);
      return true;
    });
    await assert.rejects(q.queue().task(taskId), (err: any) => err.statusCode === 404);

    const early = await create(q, { deadline: taskcluster.fromNowJSON('1 hour'), expires: taskcluster.fromNowJSON('2 hours') });
    await assert.rejects(q.queue().createTask(taskId, taskDef({ dependencies: [early], deadline: taskcluster.fromNowJSON('3 hours') })), (err: any) => {
      assert.equal(err.statusCode, 400);
      assert.deepEqual(err.body.details.expiringTaskDependencies, [early]);
      return true;
    });
    const edges = await sql<{ n: number }>`SELECT count(*)::int AS n FROM task_dependencies WHERE dependent_task_id = ${taskId}`.execute(db());
    assert.equal(edges.rows[0]!.n, 0);
  });

  it('rejects more than 10,000 dependencies and duplicates with 400', async () => {
    const tooMany = Array.from({ length: 10_001 }, () => slugid());
    await assert.rejects(q.queue().createTask(slugid(), taskDef({ dependencies: tooMany })), (err: any) => {
      assert.equal(err.statusCode, 400);
      assert.equal(err.code, 'InputValidationError');
      return true;
    });
    const a = await create(q);
    await assert.rejects(q.queue().createTask(slugid(), taskDef({ dependencies: [a, a] })), (err: any) => err.statusCode === 400);
  });

  it('accepts 10,000 dependencies', async () => {
    const root = await create(q, { taskQueueId: uniqueQueue() });
    const deps = [await create(q, { taskQueueId: uniqueQueue(), dependencies: [root] })];
    while (deps.length < 10_000) deps.push(slugid());
    await cloneUnscheduled(db(), deps[0]!, deps.slice(1).map((taskId) => ({ taskId, dependencies: [root] })));
    const big = await create(q, { taskQueueId: uniqueQueue(), dependencies: deps });
    assert.equal(await state(big), 'unscheduled');
    const edges = await sql<{ n: number }>`SELECT count(*)::int AS n FROM task_dependencies WHERE dependent_task_id = ${big}`.execute(db());
    assert.equal(edges.rows[0]!.n, 10_000);
  });

  it('lists dependent tasks a page at a time', async () => {
    const a = await create(q);
    const dependents = (await inParallel(Array.from({ length: 5 }), 5, () => create(q, { dependencies: [a] }))).sort();
    const seen: string[] = [];
    let continuationToken: string | undefined;
    let pages = 0;
    do {
      const res = await q.queue().listDependentTasks(a, { limit: 2, ...(continuationToken ? { continuationToken } : {}) });
      assert.equal(res.taskId, a);
      assert.ok(res.tasks.length <= 2);
      for (const t of res.tasks) {
        assert.deepEqual(t.task.dependencies, [a]);
        assert.equal(t.status.state, 'unscheduled');
        seen.push(t.status.taskId);
      }
      continuationToken = res.continuationToken;
      pages++;
    } while (continuationToken);
    assert.deepEqual(seen, dependents);
    assert.equal(pages, 3);

    await assert.rejects(q.queue().listDependentTasks(slugid()), (err: any) => err.statusCode === 404);
    await assert.rejects(q.queue().listDependentTasks(a, { continuationToken: 'bm90LWEta2V5' }), (err: any) => err.statusCode === 400);
    const narrow = q.queue({ authorizedScopes: [`queue:list-dependent-tasks:${slugid()}`] });
    await assert.rejects(narrow.listDependentTasks(a), (err: any) => err.statusCode === 403);
    const allowed = q.queue({ authorizedScopes: [`queue:list-dependent-tasks:${a}`] });
    assert.equal((await allowed.listDependentTasks(a)).tasks.length, 5);
  });
});

describe('a dependent past its deadline', () => {
  let q: TestQueue;
  before(async () => {
    // no loops: the deadline loop would resolve the dependent before we look
    q = await startTestQueue({ enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });

  it('is not scheduled when its dependency completes', async () => {
    const taskQueueId = uniqueQueue();
    const a = await create(q, { taskQueueId });
    const deadline = new Date(Date.now() + 1000);
    const b = await create(q, { taskQueueId: uniqueQueue(), dependencies: [a], deadline: deadline.toJSON() });
    await until('b past its deadline', () => Date.now() > deadline.getTime() + 10);
    await claimAndResolve(q, taskQueueId, 'completed', { taskId: a });
    assert.equal((await states(q.service.ctx.db, [b])).get(b), 'unscheduled');
    assert.equal((await messagesByTask(q.service.ctx.db, 'task-pending')).get(b), undefined);
  });
});
