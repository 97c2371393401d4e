// Reading tasks: task, status, and the batch forms tasks/statuses (unknown ids left out, paged over
// the requested ids), with their scopes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef } from './harness/tasks.js';
import { rejectsWith } from './harness/http.js';

describe('reading tasks', () => {
  let q: TestQueue;
  const ids: string[] = [];
  before(async () => {
    q = await startTestQueue();
    for (let i = 0; i < 5; i++) {
      const taskId = slugid();
      await q.queue().createTask(taskId, taskDef({ payload: { i } }));
      ids.push(taskId);
    }
  });
  after(async () => {
    await q?.stop();
  });

  it('task and status answer 404 for an unknown task, and need their scopes', async () => {
    await rejectsWith(q.queue().task(slugid()), 404, 'ResourceNotFound');
    await rejectsWith(q.queue().status(slugid()), 404, 'ResourceNotFound');
    await rejectsWith(q.queue({ authorizedScopes: [`queue:status:${ids[0]}`] }).task(ids[0]), 403, 'InsufficientScopes');
    await rejectsWith(q.queue({ authorizedScopes: [`queue:get-task:${ids[0]}`] }).status(ids[0]), 403, 'InsufficientScopes');
    assert.deepEqual((await q.queue({ authorizedScopes: [`queue:get-task:${ids[0]}`] }).task(ids[0])).payload, { i: 0 });
    assert.equal((await q.queue({ authorizedScopes: [`queue:status:${ids[0]}`] }).status(ids[0])).status.taskId, ids[0]);
  });

  it('tasks and statuses answer in the order asked, leaving unknown ids out', async () => {
    const unknown = slugid();
    const asked = [ids[3]!, unknown, ids[0]!, ids[1]!];
    const { tasks, continuationToken } = await q.queue().tasks({ taskIds: asked });
    assert.equal(continuationToken, undefined);
    assert.deepEqual(tasks.map((t: any) => t.taskId), [ids[3], ids[0], ids[1]]);
    assert.deepEqual(tasks.map((t: any) => t.task.payload.i), [3, 0, 1]);
    const { statuses } = await q.queue().statuses({ taskIds: asked });
    assert.deepEqual(statuses.map((s: any) => [s.taskId, s.status.state]), [[ids[3], 'pending'], [ids[0], 'pending'], [ids[1], 'pending']]);
    assert.deepEqual((await q.queue().tasks({ taskIds: [] })).tasks, []);
  });

  it('page through the requested ids with limit and continuationToken', async () => {
    const asked = [...ids, slugid()];
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await q.queue().statuses({ taskIds: asked }, { limit: 2, ...(token ? { continuationToken: token } : {}) });
      seen.push(...page.statuses.map((s: any) => s.taskId));
      token = page.continuationToken;
      pages += 1;
    } while (token);
    assert.equal(pages, 3);
    assert.deepEqual(seen, ids);
  });

  it('need the scope for every id asked', async () => {
    const scoped = q.queue({ authorizedScopes: [`queue:get-task:${ids[0]}`, `queue:status:${ids[0]}`] });
    await rejectsWith(scoped.tasks({ taskIds: [ids[0], ids[1]] }), 403, 'InsufficientScopes');
    await rejectsWith(scoped.statuses({ taskIds: [ids[0], ids[1]] }), 403, 'InsufficientScopes');
    assert.equal((await scoped.tasks({ taskIds: [ids[0]] })).tasks.length, 1);
  });
});
