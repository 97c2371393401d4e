// Reports served in shared transactions (runs/report-batch.ts): a burst of concurrent
// reportCompleted/reportFailed calls — tasks of two groups, repeats, conflicting reports of one run,
// a report on a run that is no longer the latest, a pending run, unknown tasks and runs, tasks with
// dependents, and a reportException on the single path among them — each answers exactly as it
// would alone, and the runs, the outbox and the invariants agree.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { reportBatcher, serveReports } from '../services/queue/src/runs/report-batch.js';
import { states } from './harness/graph.js';
import { invariantViolations } from './harness/invariants.js';
import { taskMessages } from './harness/messages.js';
import { outboxRows } from './harness/outbox.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';

interface Answer {
  code: number;
  status?: any;
  errorCode?: string;
  message?: string;
}

async function answer(p: Promise<{ status: any }>): Promise<Answer> {
  try {
    return { code: 200, status: (await p).status };
  } catch (err: any) {
    if (!err.statusCode) throw err;
    return { code: err.statusCode, errorCode: err.code, message: err.message };
  }
}

describe('batched reports', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ claimWorkTimeoutSec: 1, enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });
  const db = () => q.service.ctx.db;

  async function create(overrides: Record<string, unknown>): Promise<string> {
    const taskId = slugid();
    await q.queue().createTask(taskId, taskDef(overrides));
    return taskId;
  }
  /** Claims every pending run of the queue; returns a worker client per task id. */
  async function claimAll(taskQueueId: string, n: number): Promise<Map<string, any>> {
    const workers = new Map<string, any>();
    while (workers.size < n) {
      const { tasks } = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 32 });
      assert.ok(tasks.length > 0, 'every created task is claimable');
      for (const c of tasks) workers.set(c.status.taskId, q.queue({ credentials: c.credentials }));
    }
    return workers;
  }
  const groupResolvedRows = async (taskGroupId: string) =>
    (await outboxRows(db(), { exchange: 'task-group-resolved' })).filter((r) => r.body.taskGroupId === taskGroupId);

  it('a burst of concurrent reports answers each as it would alone, resolving each group once', async () => {
    const taskQueueId = uniqueQueue();
    const group = slugid();
    const other = slugid();
    const dependentsGroup = slugid();
    const inGroup = { taskQueueId, taskGroupId: group };
    const plain = await Promise.all(Array.from({ length: 12 }, () => create(inGroup)));
    const otherPlain = await Promise.all(Array.from({ length: 4 }, () => create({ taskQueueId, taskGroupId: other })));
    const [a, b, conflicted, repeated, excepted] = await Promise.all(Array.from({ length: 5 }, () => create(inGroup)));
    // a's completion unblocks both of its dependents; b's failure only the all-resolved one
    const dependent = (dependencies: string[], requires: string) =>
      create({ taskQueueId: uniqueQueue(), taskGroupId: dependentsGroup, dependencies, requires });
    const [aCompleted, aResolved, bCompleted, bResolved] = await Promise.all([
      dependent([a!], 'all-completed'), dependent([a!], 'all-resolved'), dependent([b!], 'all-completed'), dependent([b!], 'all-resolved'),
    ]);
    const pendingTask = await create({ taskQueueId: uniqueQueue() });
    // a retried task of the group: run 0 resolved as exception, run 1 running
    const retryQueue = uniqueQueue();
    const retried = await create({ taskQueueId: retryQueue, taskGroupId: group, retries: 1 });
    const run0 = (await claimAll(retryQueue, 1)).get(retried);
    await run0.reportException(retried, 0, { reason: 'worker-shutdown' });
    const run1 = (await claimAll(retryQueue, 1)).get(retried);

    const all = [...plain, ...otherPlain, a!, b!, conflicted!, repeated!, excepted!];
    const workers = await claimAll(taskQueueId, all.length);
    const w = (taskId: string) => workers.get(taskId)!;
    const before = { ...reportBatcher(q.service.ctx).stats };

    // [label, call] in one burst
    const calls: Array<[string, Promise<{ status: any }>]> = [
      ...plain.map((id, i): [string, Promise<any>] => [`plain ${i}`, i % 2 ? w(id).reportFailed(id, 0) : w(id).reportCompleted(id, 0)]),
      ...otherPlain.map((id, i): [string, Promise<any>] => [`other ${i}`, w(id).reportCompleted(id, 0)]),
      ['a', w(a!).reportCompleted(a, 0)],
      ['b', w(b!).reportFailed(b, 0)],
      ['conflict completed', w(conflicted!).reportCompleted(conflicted, 0)],
      ['conflict failed', w(conflicted!).reportFailed(conflicted, 0)],
      ...[0, 1, 2].map((i): [string, Promise<any>] => [`repeat ${i}`, w(repeated!).reportCompleted(repeated, 0)]),
      ['exception', w(excepted!).reportException(excepted, 0, { reason: 'malformed-payload' })],
      ['old run', run0.reportCompleted(retried, 0)],
      ['latest run', run1.reportCompleted(retried, 1)],
      ['pending run', q.queue().reportCompleted(pendingTask, 0)],
      ['unknown task', q.queue().reportCompleted(slugid(), 0)],
      ['unknown run', q.queue().reportFailed(plain[0], 7)],
    ];
    const answers = new Map<string, Answer>();
    await Promise.all(calls.map(async ([label, p]) => answers.set(label, await answer(p))));
    const got = (label: string) => answers.get(label)!;
    const after = reportBatcher(q.service.ctx).stats;
    assert.ok(after.items - before.items > after.batches - before.batches, 'some reports shared a batch');
    // a deadlock (or any error) would have made the batcher rerun the items one by one
    assert.equal(after.fallbacks, before.fallbacks);

    const statuses = new Map((await Promise.all([...all, retried, pendingTask].map(async (id) => [id, (await q.queue().status(id)).status] as const))));
    const resolvedAs = (label: string, taskId: string, state: string) => {
      const { code, status } = got(label);
      assert.equal(code, 200, `${label}: ${JSON.stringify(got(label))}`);
      assert.equal(status.state, state, label);
      assert.equal(status.runs.at(-1).state, state, label);
      assert.equal(status.runs.at(-1).reasonResolved, state, label);
      // nothing changed the task after its resolution: the answer is the task as it is now
      assert.deepEqual(status, statuses.get(taskId), label);
    };
    plain.forEach((id, i) => resolvedAs(`plain ${i}`, id, i % 2 ? 'failed' : 'completed'));
    otherPlain.forEach((id, i) => resolvedAs(`other ${i}`, id, 'completed'));
    resolvedAs('a', a!, 'completed');
    resolvedAs('b', b!, 'failed');
    resolvedAs('latest run', retried, 'completed');
    for (const i of [0, 1, 2]) resolvedAs(`repeat ${i}`, repeated!, 'completed');
    assert.equal(got('exception').code, 200);
    assert.equal(got('exception').status.state, 'exception');
    assert.deepEqual(got('exception').status, statuses.get(excepted!));

    // one of the two conflicting reports won; the other is refused with the single path's message
    const won = got('conflict completed').code === 200 ? 'completed' : 'failed';
    const lost = won === 'completed' ? 'failed' : 'completed';
    resolvedAs(`conflict ${won}`, conflicted!, won);
    const refused = got(`conflict ${lost}`);
    assert.equal(refused.code, 409);
    assert.equal(refused.errorCode, 'RequestConflict');
    assert.match(refused.message!, new RegExp(`^Run 0 of task ${conflicted} is ${won}; it cannot be resolved as ${lost}`));

    assert.equal(got('old run').code, 409);
    assert.match(got('old run').message!, new RegExp(`^Run 0 of task ${retried} is not the latest run \\(run 1 is\\); it cannot be resolved as completed`));
    assert.equal(got('pending run').code, 409);
    assert.match(got('pending run').message!, new RegExp(`^Run 0 of task ${pendingTask} is pending; it cannot be resolved as completed`));
    assert.equal(got('unknown task').code, 404);
    assert.equal(got('unknown task').errorCode, 'ResourceNotFound');
    assert.match(got('unknown task').message!, /^Task \S+ not found/);
    assert.equal(got('unknown run').code, 404);
    assert.match(got('unknown run').message!, new RegExp(`^Run 7 of task ${plain[0]} not found`));
    assert.equal(statuses.get(pendingTask)!.state, 'pending');
    assert.deepEqual(statuses.get(retried)!.runs.map((r: any) => `${r.state}/${r.reasonResolved}`), ['exception/worker-shutdown', 'completed/completed']);

    // dependents: scheduled exactly when their requirement is met
    const deps = await states(db(), [aCompleted!, aResolved!, bCompleted!, bResolved!]);
    assert.deepEqual([aCompleted, aResolved, bCompleted, bResolved].map((id) => deps.get(id!)), ['pending', 'pending', 'unscheduled', 'pending']);

    // the outbox: one resolution message per resolved run, carrying the status it answered with
    for (const [id, exchange] of [
      ...plain.map((id, i) => [id, i % 2 ? 'task-failed' : 'task-completed'] as const),
      ...otherPlain.map((id) => [id, 'task-completed'] as const),
      [a!, 'task-completed'], [b!, 'task-failed'], [conflicted!, `task-${won}`], [repeated!, 'task-completed'], [excepted!, 'task-exception'],
    ] as const) {
      const msgs = await taskMessages(db(), id);
      assert.deepEqual(msgs.map((m) => m.exchange), ['task-defined', 'task-pending', 'task-running', exchange], id);
      const last = msgs[3]!.body;
      assert.deepEqual(last.status, statuses.get(id));
      assert.equal(last.runId, 0);
      assert.equal(last.workerGroup, 'wg');
      assert.equal(last.workerId, 'w1');
    }
    assert.deepEqual((await taskMessages(db(), retried)).map((m) => m.exchange).slice(-1), ['task-completed']);
    assert.deepEqual((await taskMessages(db(), pendingTask)).map((m) => m.exchange), ['task-defined', 'task-pending']);
    for (const id of [aCompleted!, aResolved!, bResolved!]) {
      assert.deepEqual((await taskMessages(db(), id)).map((m) => m.exchange), ['task-defined', 'task-pending'], id);
    }
    assert.deepEqual((await taskMessages(db(), bCompleted!)).map((m) => m.exchange), ['task-defined']);

    // each group resolved once, after the last of its tasks; the dependents' group not at all
    const groupRows = await groupResolvedRows(group);
    assert.equal(groupRows.length, 1);
    assert.equal((await groupResolvedRows(other)).length, 1);
    assert.equal((await groupResolvedRows(dependentsGroup)).length, 0);
    const lastOfGroup = Math.max(...(await Promise.all([...plain, a!, b!, conflicted!, repeated!, excepted!, retried].map(async (id) =>
      Number((await outboxRows(db(), { taskId: id })).at(-1)!.id)))));
    assert.ok(Number(groupRows[0]!.id) > lastOfGroup, 'task-group-resolved comes after the last resolution of the group');

    assert.deepEqual(await invariantViolations(db()), []);
  });

  it('a repeat of a report that resolved in an earlier batch answers the same, and writes nothing', async () => {
    const taskQueueId = uniqueQueue();
    const ids = await Promise.all(Array.from({ length: 6 }, () => create({ taskQueueId })));
    const workers = await claimAll(taskQueueId, ids.length);
    const first = await Promise.all(ids.map((id) => workers.get(id).reportFailed(id, 0)));
    const rows = (await outboxRows(db())).length;
    const again = await Promise.all(ids.flatMap((id) => [workers.get(id).reportFailed(id, 0), workers.get(id).reportFailed(id, 0)]));
    ids.forEach((_, i) => {
      assert.deepEqual(again[2 * i].status, first[i].status);
      assert.deepEqual(again[2 * i + 1].status, first[i].status);
    });
    const refused = await Promise.all(ids.map((id) => answer(workers.get(id).reportCompleted(id, 0))));
    assert.deepEqual(refused.map((r) => r.code), ids.map(() => 409));
    assert.equal((await outboxRows(db())).length, rows, 'repeats and conflicts commit no message');
    assert.deepEqual(await invariantViolations(db(), ids), []);
  });

  it('within one batch, reports after a resolution of the same run answer as if they came after its commit', async () => {
    const taskQueueId = uniqueQueue();
    const taskGroupId = slugid();
    const [x, y] = await Promise.all([create({ taskQueueId, taskGroupId }), create({ taskQueueId, taskGroupId })]);
    await claimAll(taskQueueId, 2);
    const completed = { state: 'completed', reason: 'completed' } as const;
    const failed = { state: 'failed', reason: 'failed' } as const;
    const unknown = slugid();
    // served directly, so that these items certainly share one transaction
    const outcomes = await serveReports(q.service.ctx, [
      { taskId: x!, runId: 0, res: completed },
      { taskId: x!, runId: 0, res: failed },
      { taskId: y!, runId: 0, res: failed },
      { taskId: x!, runId: 0, res: completed },
      { taskId: unknown, runId: 0, res: completed },
      { taskId: y!, runId: 1, res: failed },
    ]);
    const [first, conflict, other, repeat, noTask, noRun] = outcomes as any[];
    assert.equal(first.ok, true);
    assert.equal(first.value.status.state, 'completed');
    assert.equal(conflict.ok, false);
    assert.equal(conflict.error.code, 'RequestConflict');
    assert.equal(conflict.error.message, `Run 0 of task ${x} is completed; it cannot be resolved as failed`);
    assert.equal(other.value.status.state, 'failed');
    assert.deepEqual(repeat.value.status, first.value.status);
    assert.equal(noTask.error.code, 'ResourceNotFound');
    assert.equal(noTask.error.message, `Task ${unknown} not found`);
    assert.equal(noRun.error.code, 'ResourceNotFound');
    assert.equal(noRun.error.message, `Run 1 of task ${y} not found`);

    assert.deepEqual((await q.queue().status(x)).status, first.value.status);
    assert.deepEqual((await q.queue().status(y)).status, other.value.status);
    assert.deepEqual((await taskMessages(db(), x!)).map((m) => m.exchange).slice(3), ['task-completed']);
    assert.deepEqual((await taskMessages(db(), y!)).map((m) => m.exchange).slice(3), ['task-failed']);
    // both tasks of the group in one statement: one decrement by two, one announcement
    const rows = await groupResolvedRows(taskGroupId);
    assert.equal(rows.length, 1);
    assert.deepEqual(Object.keys(rows[0]!.body).sort(), ['expires', 'schedulerId', 'taskGroupId', 'version']);
    assert.deepEqual(await invariantViolations(db(), [x!, y!]), []);
  });

  it('carries quotes and backslashes intact through the statements sent with COMMIT', async () => {
    // the report's statements sent with BEGIN and COMMIT carry their values as literals
    // (db/pipeline.ts), the claim's messages are built in SQL (claims/finish.ts): a value that
    // would break out of a badly quoted literal
    const taskQueueId = uniqueQueue();
    const tricky = `it's \\' a '' trap \\\\ "x" \u00e9 $$ $q$`;
    const taskId = slugid();
    await q.queue().createTask(taskId, taskDef({ taskQueueId, routes: [`o'brien.\\${taskId}`], tags: { note: tricky } }));
    const claimed = await q.queue().claimWork(taskQueueId, { workerGroup: 'g', workerId: 'w', tasks: 1 });
    assert.equal(claimed.tasks.length, 1);
    await q.queue().reportCompleted(taskId, 0);
    const messages = await taskMessages(db(), taskId);
    assert.deepEqual(messages.map((m) => m.exchange), ['task-defined', 'task-pending', 'task-running', 'task-completed']);
    for (const m of messages) {
      assert.deepEqual(m.body.task, { tags: { note: tricky } }, m.exchange);
      assert.deepEqual(m.row.cc, [`route.o'brien.\\${taskId}`], m.exchange);
    }
    const worker = await q.queue().getWorker(...taskQueueId.split('/'), 'g', 'w');
    assert.deepEqual(worker.recentTasks, [{ taskId, runId: 0 }]);
    assert.deepEqual(await invariantViolations(db()), []);
  });
});
