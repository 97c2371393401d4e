// What a task queue holds: pendingTasks, taskQueueCounts, listPendingTasks, listClaimedTasks.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { allPages, assertSchema, expectError, withClockAt, wrongShapeToken } from './harness/listing.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';

describe('task queue contents', () => {
  let q: TestQueue;
  before(async () => {
    // anonymous callers may count the `anon/*` queues: the literal-slash test sends raw, unsigned requests
    q = await startTestQueue({ anonymousScopes: ['queue:pending-count:anon/*', 'queue:claimed-count:anon/*'] });
  });
  after(async () => {
    await q?.stop();
  });

  async function createTasks(taskQueueId: string, n: number, overrides: Record<string, unknown> = {}): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const taskId = slugid();
      await q.queue().createTask(taskId, taskDef({ taskQueueId, ...overrides }));
      ids.push(taskId);
    }
    return ids;
  }

  it('counts pending and claimed runs through create, claim and completion', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const [provisionerId, workerType] = taskQueueId.split('/');
    const counts = async () => {
      const c = await queue.taskQueueCounts(taskQueueId);
      assertSchema('v1/task-queue-counts-response.json', c);
      return c;
    };

    assert.deepEqual(await counts(), { taskQueueId, pendingTasks: 0, claimedTasks: 0 });
    await createTasks(taskQueueId, 3);
    assert.deepEqual(await counts(), { taskQueueId, pendingTasks: 3, claimedTasks: 0 });
    const pending = await queue.pendingTasks(taskQueueId);
    assertSchema('v1/pending-tasks-response.json', pending);
    assert.deepEqual(pending, { provisionerId, workerType, taskQueueId, pendingTasks: 3 });

    const claim = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 2 });
    assert.equal(claim.tasks.length, 2);
    assert.deepEqual(await counts(), { taskQueueId, pendingTasks: 1, claimedTasks: 2 });
    assert.equal((await queue.pendingTasks(taskQueueId)).pendingTasks, 1);

    await q.queue({ credentials: claim.tasks[0].credentials }).reportCompleted(claim.tasks[0].status.taskId, 0);
    assert.deepEqual(await counts(), { taskQueueId, pendingTasks: 1, claimedTasks: 1 });
    await q.queue({ credentials: claim.tasks[1].credentials }).reportFailed(claim.tasks[1].status.taskId, 0);
    assert.deepEqual(await counts(), { taskQueueId, pendingTasks: 1, claimedTasks: 0 });

    // other queues are not counted
    assert.deepEqual(await queue.taskQueueCounts(uniqueQueue()).then((c: any) => [c.pendingTasks, c.claimedTasks]), [0, 0]);
  });

  it('does not count a claim whose takenUntil has passed', async () => {
    const taskQueueId = uniqueQueue();
    await createTasks(taskQueueId, 1);
    const claim = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
    assert.equal(claim.tasks.length, 1);
    const later = new Date(claim.tasks[0].takenUntil).getTime() + 1000;
    await withClockAt(q, new Date(later), async () => {
      assert.equal((await q.queue().taskQueueCounts(taskQueueId)).claimedTasks, 0);
      assert.deepEqual((await q.queue().listClaimedTasks(taskQueueId)).tasks, []);
    });
  });

  it('lists pending runs in insertion order with their definitions, page by page', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    // priorities differ, so insertion order is visibly not claim order
    const ids = [
      ...(await createTasks(taskQueueId, 2, { priority: 'lowest' })),
      ...(await createTasks(taskQueueId, 2, { priority: 'highest' })),
      ...(await createTasks(taskQueueId, 1, { priority: 'medium' })),
    ];
    const whole = await queue.listPendingTasks(taskQueueId);
    assertSchema('v1/list-pending-tasks-response.json', whole);
    assert.equal(whole.continuationToken, undefined);
    assert.deepEqual(whole.tasks.map((t: any) => t.taskId), ids);
    for (const item of whole.tasks) {
      assert.equal(item.runId, 0);
      assert.deepEqual(item.task, await queue.task(item.taskId));
      assert.ok(Math.abs(Date.parse(item.inserted) - Date.now()) < 60_000);
    }

    const { items, pages } = await allPages<any>((query) => queue.listPendingTasks(taskQueueId, query), 'tasks', 2);
    assert.equal(pages, 3);
    assert.deepEqual(items.map((t) => t.taskId), ids);
    // a page of exactly the remaining rows has no token
    const exact = await queue.listPendingTasks(taskQueueId, { limit: 5 });
    assert.equal(exact.tasks.length, 5);
    assert.equal(exact.continuationToken, undefined);

    // a claimed run leaves the list
    const claim = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
    assert.equal(claim.tasks[0].status.taskId, ids[2]);
    assert.deepEqual((await queue.listPendingTasks(taskQueueId)).tasks.map((t: any) => t.taskId), ids.filter((id) => id !== ids[2]));

    assert.deepEqual(await queue.listPendingTasks(uniqueQueue()), { tasks: [] });
  });

  it('lists claimed runs oldest claim first, with worker and definition, page by page', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const ids = await createTasks(taskQueueId, 3);
    const claims = [];
    for (const workerId of ['w1', 'w2', 'w3']) {
      const c = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId, tasks: 1 });
      claims.push(c.tasks[0]);
    }
    assert.deepEqual(claims.map((c) => c.status.taskId), ids);

    const whole = await queue.listClaimedTasks(taskQueueId);
    assertSchema('v1/list-claimed-tasks-response.json', whole);
    assert.deepEqual(
      whole.tasks.map((t: any) => [t.taskId, t.runId, t.workerGroup, t.workerId, t.claimed]),
      claims.map((c) => [c.status.taskId, 0, 'wg', c.workerId, c.status.runs[0].started]),
    );
    for (const item of whole.tasks) assert.deepEqual(item.task, await queue.task(item.taskId));

    const { items, pages } = await allPages<any>((query) => queue.listClaimedTasks(taskQueueId, query), 'tasks', 1);
    assert.equal(pages, 3);
    assert.deepEqual(items.map((t) => t.taskId), ids);

    await q.queue({ credentials: claims[1].credentials }).reportCompleted(ids[1], 0);
    assert.deepEqual((await queue.listClaimedTasks(taskQueueId)).tasks.map((t: any) => t.taskId), [ids[0], ids[2]]);
    assert.deepEqual(await queue.listClaimedTasks(uniqueQueue()), { tasks: [] });
  });

  it('rejects bad paging arguments with 400', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    for (const list of [queue.listPendingTasks.bind(queue), queue.listClaimedTasks.bind(queue)]) {
      await expectError(list(taskQueueId, { continuationToken: 'not-a-token' }), 400, 'InvalidRequestArguments');
      await expectError(list(taskQueueId, { continuationToken: wrongShapeToken }), 400, 'InvalidRequestArguments');
      const textKey = Buffer.from(JSON.stringify(['yesterday', 'x'])).toString('base64url');
      await expectError(list(taskQueueId, { continuationToken: textKey }), 400, 'InvalidRequestArguments');
      await expectError(list(taskQueueId, { limit: 0 }), 400, 'InvalidRequestArguments');
    }
  });

  it('needs exactly the declared scopes', async () => {
    const tq = uniqueQueue();
    const only = (...scopes: string[]) => q.queue({ authorizedScopes: scopes });
    await only(`queue:pending-count:${tq}`).pendingTasks(tq);
    await expectError(only(`queue:pending-count:other/wt`).pendingTasks(tq), 403, 'InsufficientScopes');

    await only(`queue:pending-count:${tq}`, `queue:claimed-count:${tq}`).taskQueueCounts(tq);
    await expectError(only(`queue:pending-count:${tq}`).taskQueueCounts(tq), 403, 'InsufficientScopes');
    await expectError(only(`queue:claimed-count:${tq}`).taskQueueCounts(tq), 403, 'InsufficientScopes');

    await only(`queue:pending-list:${tq}`).listPendingTasks(tq);
    await expectError(only(`queue:claimed-list:${tq}`).listPendingTasks(tq), 403, 'InsufficientScopes');
    await only(`queue:claimed-list:${tq}`).listClaimedTasks(tq);
    await expectError(only(`queue:pending-list:${tq}`).listClaimedTasks(tq), 403, 'InsufficientScopes');
  });

  it('takes the queue id encoded (as the client sends it) or, where the route allows, with a literal slash', async () => {
    const taskQueueId = uniqueQueue().replace(/^[^/]*/, 'anon');
    await createTasks(taskQueueId, 1);
    const base = `${q.rootUrl}/api/queue/v1`;
    const literal = await fetch(`${base}/pending/${taskQueueId}`);
    assert.equal(literal.status, 200);
    assert.equal(((await literal.json()) as any).pendingTasks, 1);
    const encoded = await fetch(`${base}/task-queues/${encodeURIComponent(taskQueueId)}/counts`);
    assert.deepEqual(await encoded.json(), { taskQueueId, pendingTasks: 1, claimedTasks: 0 });
    // with a literal slash the path is another route's: a 400 naming the bad id, not a 500
    const ambiguous = await fetch(`${base}/task-queues/${taskQueueId}/counts`);
    assert.equal(ambiguous.status, 400);
    const body = (await ambiguous.json()) as any;
    assert.equal(body.code, 'InvalidRequestArguments');
    assert.match(body.message, /taskQueueId/);
  });
});
