// A 1,000-task chain, each task depending (all-resolved) on the one before: only ever one task is
// pending, and each becomes pending in the transaction that resolves its predecessor. The chain is
// driven by cancelling (one transaction a step, the cheapest resolution) so the file stays short on
// a loaded machine; deps-graph.test.ts covers all-completed with real workers.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cancelOnlyPending, cloneUnscheduled, countIn, create } from './harness/graph.js';
import { outboxRows } from './harness/outbox.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, uniqueQueue } from './harness/tasks.js';

describe('a chain of dependencies', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue();
  });
  after(async () => {
    await q?.stop();
  });
  const db = () => q.service.ctx.db;

  it('runs a 1,000-task chain strictly in order', async () => {
    const taskQueueId = uniqueQueue();
    const ids = [await create(q, { taskQueueId })];
    ids.push(await create(q, { taskQueueId, dependencies: [ids[0]], requires: 'all-resolved' }));
    while (ids.length < 1000) ids.push(slugid());
    await cloneUnscheduled(db(), ids[1]!, ids.slice(2).map((taskId, i) => ({ taskId, dependencies: [ids[i + 1]!] })));
    assert.equal(await countIn(db(), ids, 'unscheduled'), 999);
    // only ever one task of the chain is pending, the next one
    for (const id of ids) assert.equal(await cancelOnlyPending(q.service.ctx, taskQueueId), id);
    assert.equal(await countIn(db(), ids, 'exception'), 1000);

    // each task-pending follows the resolution of the task before it
    const rows = await outboxRows(db());
    const at = new Map<string, number>();
    rows.forEach((r, i) => at.set(`${r.exchange.split('/').pop()}:${r.routing_key.split('.')[1]}`, i));
    for (let i = 1; i < ids.length; i++) {
      assert.ok(at.get(`task-pending:${ids[i]}`)! > at.get(`task-exception:${ids[i - 1]}`)!, `task ${i} became pending too early`);
    }
  });
});
