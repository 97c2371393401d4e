// Built-in task queues: built-in/succeed completes and built-in/fail fails its tasks with no worker,
// through the normal claim and resolve transitions, so RabbitMQ listeners see the usual events.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { deleteExchanges, listen, onPrefix as onTestPrefix, type BindingLike, type Listener } from './harness/amqp.js';
import { taskExchanges } from './harness/messages.js';
import { amqpUrl, startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef } from './harness/tasks.js';
import { waitFor } from './harness/wait.js';

describe('built-in task queues', () => {
  let q: TestQueue;
  let listener: Listener | undefined;
  const events = new taskcluster.QueueEvents({ rootUrl: 'http://unused' });
  const onPrefix = (b: BindingLike) => onTestPrefix(q.config.exchangePrefix, b);

  before(async () => {
    q = await startTestQueue({ amqpUrl });
  });
  after(async () => {
    await listener?.close();
    await q?.stop();
    if (q) await deleteExchanges(q.config.exchangePrefix);
  });

  const finalState = (taskId: string) =>
    waitFor(`task ${taskId} resolved`, async () => {
      const { status } = await q.queue().status(taskId);
      return ['completed', 'failed', 'exception'].includes(status.state) ? status : undefined;
    });

  it('completes a task on built-in/succeed and fails one on built-in/fail, with their events on RabbitMQ', async () => {
    const taskGroupId = slugid();
    listener = await listen([
      onPrefix(events.taskCompleted({ taskGroupId })),
      onPrefix(events.taskFailed({ taskGroupId })),
      onPrefix(events.taskRunning({ taskGroupId })),
    ]);
    const ok = slugid();
    const bad = slugid();
    await q.queue().createTask(ok, taskDef({ taskQueueId: 'built-in/succeed', taskGroupId }));
    await q.queue().createTask(bad, taskDef({ taskQueueId: 'built-in/fail', taskGroupId }));

    const okStatus = await finalState(ok);
    assert.equal(`${okStatus.state}/${okStatus.runs[0].reasonResolved}`, 'completed/completed');
    assert.equal(okStatus.runs[0].workerGroup, 'built-in');
    assert.equal(okStatus.runs[0].workerId, 'succeed');
    const badStatus = await finalState(bad);
    assert.equal(`${badStatus.state}/${badStatus.runs[0].reasonResolved}`, 'failed/failed');
    assert.equal(badStatus.runs[0].workerId, 'fail');

    assert.deepEqual(await taskExchanges(q.service.ctx.db, ok), ['task-defined', 'task-pending', 'task-running', 'task-completed']);
    assert.deepEqual(await taskExchanges(q.service.ctx.db, bad), ['task-defined', 'task-pending', 'task-running', 'task-failed']);

    const completed = await listener.waitFor((m) => m.exchange.endsWith('/task-completed'));
    assert.equal(completed[0]!.routingKey, `primary.${ok}.0.built-in.succeed.built-in.succeed.-.${taskGroupId}._`);
    const failed = await listener.waitFor((m) => m.exchange.endsWith('/task-failed'));
    assert.equal(failed[0]!.body.status.taskId, bad);
    assert.equal((await listener.waitFor((m) => m.exchange.endsWith('/task-running'), 2)).length, 2);
  });

  it('resolves many tasks, and a dependent once its built-in dependency completed', async () => {
    const ids = Array.from({ length: 60 }, () => slugid());
    await Promise.all(ids.map((id) => q.queue().createTask(id, taskDef({ taskQueueId: 'built-in/succeed' }))));
    const dependent = slugid();
    await q.queue().createTask(dependent, taskDef({ taskQueueId: 'built-in/fail', dependencies: [ids[0]] }));
    for (const id of ids) assert.equal((await finalState(id)).state, 'completed');
    const dep = await finalState(dependent);
    assert.equal(dep.state, 'failed');
    assert.equal(dep.runs.length, 1);
  });

  it('leaves a task cancelled before it was claimed as it is', async () => {
    // a deadline in the past cannot be created; cancel races the built-in claimer instead, and
    // whichever wins, the task ends in one resolved state with one run
    const taskId = slugid();
    await q.queue().createTask(taskId, taskDef({ taskQueueId: 'built-in/succeed' }));
    await q.queue().cancelTask(taskId).catch(() => {});
    const status = await finalState(taskId);
    assert.equal(status.runs.length, 1);
    assert.ok(['completed/completed', 'exception/canceled'].includes(`${status.state}/${status.runs[0].reasonResolved}`));
  });
});
