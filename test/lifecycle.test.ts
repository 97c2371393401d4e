// The basic lifecycle through taskcluster-client: create → claimWork → reportCompleted, with the
// messages each step committed to the outbox.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { outboxRows } from './harness/outbox.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';

describe('task lifecycle', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue();
  });
  after(async () => {
    await q?.stop();
  });

  it('creates, claims and completes a task, writing each event to the outbox', async () => {
    const queue = q.queue();
    const taskId = slugid();
    const taskQueueId = uniqueQueue();
    const created = await queue.createTask(taskId, taskDef({ taskQueueId, routes: ['index.a.b'], tags: { k: 'v' } }));
    assert.equal(created.status.state, 'pending');
    assert.equal(created.status.runs.length, 1);
    assert.equal(created.status.runs[0].reasonCreated, 'scheduled');

    const claim = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 4 });
    assert.equal(claim.tasks.length, 1);
    const [c] = claim.tasks;
    assert.equal(c.status.taskId, taskId);
    assert.equal(c.runId, 0);
    assert.equal(c.status.state, 'running');
    assert.equal(c.task.metadata.name, 'test task');

    // the worker resolves with the temporary credentials it was handed
    const workerQueue = q.queue({ credentials: c.credentials });
    const done = await workerQueue.reportCompleted(taskId, 0);
    assert.equal(done.status.state, 'completed');
    // idempotent repeat
    const again = await workerQueue.reportCompleted(taskId, 0);
    assert.deepEqual(again.status, done.status);

    const rows = await outboxRows(q.service.ctx.db, { taskId });
    assert.deepEqual(rows.map((r) => r.exchange.split('/').pop()), ['task-defined', 'task-pending', 'task-running', 'task-completed']);
    const [, prov, wt] = taskQueueId.match(/^(.*)\/(.*)$/)!;
    assert.equal(rows[0]!.routing_key, `primary.${taskId}._._._.${prov}.${wt}.-.${taskId}._`);
    assert.equal(rows[1]!.routing_key, `primary.${taskId}.0._._.${prov}.${wt}.-.${taskId}._`);
    assert.equal(rows[2]!.routing_key, `primary.${taskId}.0.wg.w1.${prov}.${wt}.-.${taskId}._`);
    assert.deepEqual(rows[3]!.cc, ['route.index.a.b']);
    assert.equal(rows[0]!.body.status.state, 'unscheduled');
    assert.deepEqual(rows[0]!.body.task, { tags: { k: 'v' } });
    assert.equal(rows[3]!.body.status.state, 'completed');
    assert.equal(rows[3]!.body.runId, 0);
    // and the group of one resolved
    const group = await outboxRows(q.service.ctx.db, { exchange: 'task-group-resolved' });
    assert.equal(group.length, 1);
    assert.equal(group[0]!.routing_key, `primary.${taskId}.-._`);
  });

  it('claimWork long-poll returns within milliseconds of a task becoming pending', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const started = Date.now();
    const claiming = queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w2', tasks: 1 });
    // the long-poll is waiting: creating the task must wake it (not a poll interval)
    await new Promise((r) => setTimeout(r, 300));
    const createdAt = Date.now();
    await queue.createTask(slugid(), taskDef({ taskQueueId }));
    const result = await claiming;
    assert.equal(result.tasks.length, 1);
    assert.ok(Date.now() - createdAt < 1000, `hand-off took ${Date.now() - createdAt} ms`);
    assert.ok(Date.now() - started < 5000);
  });

  it('answers 404 in Taskcluster error format for an unknown task', async () => {
    await assert.rejects(q.queue().status(slugid()), (err: any) => {
      assert.equal(err.statusCode, 404);
      assert.equal(err.code, 'ResourceNotFound');
      return true;
    });
  });

  it('rejects an invalid body with 400 InputValidationError and stores nothing', async () => {
    const taskId = slugid();
    await assert.rejects(q.queue().createTask(taskId, taskDef({ priority: 'normal' })), (err: any) => {
      assert.equal(err.statusCode, 400);
      assert.equal(err.code, 'InputValidationError');
      return true;
    });
    await assert.rejects(q.queue().task(taskId), (err: any) => err.statusCode === 404);
  });

  it('refuses anonymous callers with 403', async () => {
    const anon = new taskcluster.Queue({ rootUrl: q.rootUrl, retries: 0 });
    await assert.rejects(anon.createTask(slugid(), taskDef()), (err: any) => {
      assert.equal(err.statusCode, 403);
      assert.equal(err.code, 'InsufficientScopes');
      return true;
    });
  });
});
