// task-group-resolved: published in the transaction that leaves the group with no unresolved task,
// once per such transition, and never while a retry run is pending (Taskcluster re-fires it and
// fires it during retries, ⚠ #8808).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { deleteExchanges, listen, onPrefix as onTestPrefix, type BindingLike, type Listener } from './harness/amqp.js';
import { claimAndResolve, create, inParallel, states } from './harness/graph.js';
import { outboxRows } from './harness/outbox.js';
import { amqpUrl, startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, uniqueQueue } from './harness/tasks.js';

describe('task-group-resolved', () => {
  let q: TestQueue;
  let listener: Listener | undefined;
  const events = new taskcluster.QueueEvents({ rootUrl: 'http://unused' });
  const onPrefix = (b: BindingLike) => onTestPrefix(q.config.exchangePrefix, b);
  before(async () => {
    // idle workers give up quickly once the queue is empty
    q = await startTestQueue({ amqpUrl, claimWorkTimeoutSec: 1 });
  });
  after(async () => {
    await listener?.close();
    await q?.stop();
    if (q) await deleteExchanges(q.config.exchangePrefix);
  });
  const resolvedRows = async (taskGroupId: string) =>
    (await outboxRows(q.service.ctx.db, { exchange: 'task-group-resolved' })).filter((r) => r.routing_key.split('.')[1] === taskGroupId);

  it('arrives exactly once for a group whose 120 tasks six workers complete concurrently', async () => {
    const taskGroupId = slugid();
    const sentinel = slugid();
    listener = await listen([onPrefix(events.taskGroupResolved({ taskGroupId })), onPrefix(events.taskDefined({ taskId: sentinel }))]);
    const taskQueueId = uniqueQueue();
    const ids = await inParallel(Array.from({ length: 120 }), 8, () => create(q, { taskGroupId, taskQueueId }));

    let done = 0;
    await Promise.all(
      Array.from({ length: 6 }, async (_, w) => {
        while (done < ids.length) {
          const claim = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: `w${w}`, tasks: 4 });
          await Promise.all(
            claim.tasks.map(async (c: any) => {
              await q.queue({ credentials: c.credentials }).reportCompleted(c.status.taskId, c.runId);
              done++;
            }),
          );
        }
      }),
    );
    assert.deepEqual([...(await states(q.service.ctx.db, ids)).values()].filter((s) => s !== 'completed'), []);
    assert.equal((await resolvedRows(taskGroupId)).length, 1);

    // the relay publishes in commit order: once the sentinel's task-defined is here, so is anything before it
    await create(q, {}, sentinel);
    await listener.waitFor((m) => m.exchange.endsWith('/task-defined'));
    const announced = listener.messages.filter((m) => m.exchange.endsWith('/task-group-resolved'));
    assert.equal(announced.length, 1);
    assert.equal(announced[0]!.routingKey, `primary.${taskGroupId}.-._`);
    assert.deepEqual(Object.keys(announced[0]!.body).sort(), ['expires', 'schedulerId', 'taskGroupId', 'version']);
  });

  it('waits while a retry run is pending, and announces again only after a rerun reopened the group', async () => {
    const taskGroupId = slugid();
    const taskQueueId = uniqueQueue();
    const a = await create(q, { taskGroupId, taskQueueId });
    const b = await create(q, { taskGroupId, taskQueueId: uniqueQueue() });
    await claimAndResolve(q, taskQueueId, 'completed', { taskId: a });
    assert.equal((await resolvedRows(taskGroupId)).length, 0);

    const bQueue = (await q.queue().status(b)).status.taskQueueId;
    const claim = await q.queue().claimWork(bQueue, { workerGroup: 'wg', workerId: 'w', tasks: 1 });
    await q.queue({ credentials: claim.tasks[0].credentials }).reportException(b, 0, { reason: 'worker-shutdown' });
    assert.equal((await q.queue().status(b)).status.runs[1].state, 'pending');
    assert.equal((await resolvedRows(taskGroupId)).length, 0, 'not while run 1 is pending');

    await claimAndResolve(q, bQueue, 'failed', { taskId: b });
    assert.equal((await resolvedRows(taskGroupId)).length, 1);
    // a repeated report changes nothing and announces nothing
    await q.queue().reportFailed(b, 1);
    assert.equal((await resolvedRows(taskGroupId)).length, 1);

    await q.queue().rerunTask(b);
    assert.equal((await resolvedRows(taskGroupId)).length, 1);
    await claimAndResolve(q, bQueue, 'completed', { taskId: b });
    const rows = await resolvedRows(taskGroupId);
    assert.equal(rows.length, 2, 'one per transition to no unresolved task');
  });
});
