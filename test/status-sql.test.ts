// The claim and create batches build a task's status, definition and messages in SQL
// (tasks/status-sql.ts, outbox/messages-sql.ts, claims/finish.ts), where every other path builds
// them in JS (toStatus, toDefinition, taskMessage). These tests keep the two equal: the SQL status
// and definition of tasks in every state against toStatus, toDefinition and the endpoints,
// timestamps with microseconds included; the outbox row and answer of claimWork and claimTask
// against taskMessage and toDefinition for the same claim; and the messages of a batched
// createTask against newTaskMessages.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { taskMessage } from '../services/queue/src/outbox/messages.js';
import { newTaskMessages } from '../services/queue/src/tasks/new-task.js';
import { definitionSql, runJsonSql, statusSql } from '../services/queue/src/tasks/status-sql.js';
import { loadTask, loadTasks, toDefinition, toStatus } from '../services/queue/src/tasks/status.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { outboxRows } from './harness/outbox.js';
import { assertValidMessage } from './harness/messages.js';

describe('task status and task-running messages built in SQL', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });

  async function statusesInSql(taskIds: string[]): Promise<Map<string, { status: unknown; definition: unknown }>> {
    const { rows } = await sql<{ task_id: string; status: unknown; definition: unknown }>`
      SELECT t.task_id, ${statusSql('t', sql.ref('r.list'))} AS status, ${definitionSql('t')} AS definition
      FROM tasks t CROSS JOIN LATERAL (
        SELECT json_agg(${runJsonSql('x')} ORDER BY x.run_id) AS list FROM runs x WHERE x.task_id = t.task_id) r
      WHERE t.task_id = ANY(${taskIds}::text[])`.execute(q.service.ctx.db);
    return new Map(rows.map((r) => [r.task_id, r]));
  }

  it('equals toStatus and toDefinition, and the status and task endpoints, for tasks in every state', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const [provisionerId, workerType] = taskQueueId.split('/');
    const worker = { workerGroup: 'wg', workerId: 'w1' };
    const make = async (over: Record<string, unknown> = {}) => {
      const taskId = slugid();
      await queue.createTask(taskId, taskDef({ taskQueueId, routes: ['a.b', 'c'], tags: { k: 'v' }, ...over }));
      return taskId;
    };
    const claimOne = async () => (await queue.claimWork(taskQueueId, { ...worker, tasks: 1 })).tasks[0];

    const pending = await make();
    const unscheduled = await make({ dependencies: [pending] });
    const legacy = slugid();
    await queue.createTask(legacy, taskDef({ taskQueueId: undefined, provisionerId, workerType, retries: 2 }));
    // claimed in creation order: pending's run, then legacy's
    const running = await claimOne();
    assert.equal(running.status.taskId, pending);
    const retried = await claimOne();
    assert.equal(retried.status.taskId, legacy);
    const completed = await make();
    const failed = await make();
    const canceled = await make();
    for (const id of [completed, failed]) {
      const claim = await claimOne();
      assert.equal(claim.status.taskId, id);
      await (id === completed ? queue.reportCompleted(id, 0) : queue.reportFailed(id, 0));
    }
    // after the claims above: its retry run would be claimed first
    await queue.reportException(legacy, 0, { reason: 'worker-shutdown' });
    await queue.cancelTask(canceled);
    const all = [pending, unscheduled, legacy, completed, failed, canceled];

    // timestamps with microseconds: the JS Date keeps the milliseconds, truncated
    await sql`UPDATE runs SET scheduled = scheduled + interval '999 microseconds' WHERE task_id = ${completed}`.execute(q.service.ctx.db);
    await sql`UPDATE tasks SET deadline = deadline + interval '456789 microseconds' WHERE task_id = ${failed}`.execute(q.service.ctx.db);

    const inSql = await statusesInSql(all);
    const inJs = await loadTasks(q.service.ctx.db, all);
    assert.equal(inJs.length, all.length);
    const states = new Set<string>();
    for (const t of inJs) {
      const expected = toStatus(t);
      states.add(expected.state);
      const got = inSql.get(t.task.task_id)!;
      assert.deepEqual(got.status, expected, `status of ${t.task.task_id} (${expected.state})`);
      assert.deepEqual(got.status, (await queue.status(t.task.task_id)).status);
      assert.deepEqual(got.definition, toDefinition(t.task), `definition of ${t.task.task_id}`);
      assert.deepEqual(got.definition, await queue.task(t.task.task_id));
    }
    assert.deepEqual([...states].sort(), ['completed', 'exception', 'failed', 'pending', 'running', 'unscheduled']);
    const legacyStatus = inSql.get(legacy)!.status as { runs: Array<Record<string, unknown>> };
    assert.deepEqual(legacyStatus.runs.map((r) => [r.state, r.reasonResolved, r.reasonCreated]), [
      ['exception', 'worker-shutdown', 'scheduled'],
      ['pending', undefined, 'retry'],
    ]);
  });

  it('writes the task-running message taskMessage builds, for claimWork and claimTask', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const worker = { workerGroup: 'wg', workerId: 'w2' };

    /** The claim's outbox row against taskMessage for the task as it is right after the claim. */
    const check = async (claim: any) => {
      const { taskId } = claim.status;
      const t = (await loadTask(q.service.ctx.db, taskId))!;
      // the answer's status and definition are the SQL ones
      assert.deepEqual(claim.status, toStatus(t));
      assert.deepEqual(claim.task, toDefinition(t.task));
      const rows = (await outboxRows(q.service.ctx.db, { taskId, exchange: 'task-running' })).filter((r) => r.body.runId === claim.runId);
      assert.equal(rows.length, 1, `one task-running message for ${taskId}/${claim.runId}`);
      const expected = taskMessage('taskRunning', t, {
        runId: claim.runId, workerGroup: claim.workerGroup, workerId: claim.workerId, takenUntil: claim.takenUntil,
      });
      const row = rows[0]!;
      assert.equal(row.exchange, `${q.config.exchangePrefix}${expected.exchange}`);
      assert.equal(row.routing_key, expected.routingKey);
      assert.deepEqual(row.cc, expected.cc);
      assert.deepEqual(row.cc, ['route.x.y', 'route.z']);
      assert.deepEqual(row.body, expected.body);
      assertValidMessage(row);
    };

    const [byWork, byTask] = [slugid(), slugid()];
    for (const taskId of [byWork, byTask]) {
      await queue.createTask(taskId, taskDef({ taskQueueId, routes: ['x.y', 'z'], tags: { purpose: 'check' }, retries: 1 }));
    }
    const first = await queue.claimWork(taskQueueId, { ...worker, tasks: 1 });
    assert.equal(first.tasks[0].status.taskId, byWork);
    await check(first.tasks[0]);
    // a second run, so the status carries an earlier one
    await queue.reportException(byWork, 0, { reason: 'intermittent-task' });
    const both = (await queue.claimWork(taskQueueId, { ...worker, tasks: 2 })).tasks;
    // FIFO: the retry run became pending after byTask's first run
    assert.deepEqual(both.map((c: any) => [c.status.taskId, c.runId]), [[byTask, 0], [byWork, 1]]);
    for (const claim of both) await check(claim);
    // claimTask: a rerun's new run
    await queue.reportCompleted(byTask, 0);
    await queue.rerunTask(byTask);
    await check(await queue.claimTask(byTask, 1, worker));
  });

  it('writes the task-defined and task-pending messages newTaskMessages builds, for a batched createTask', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const ids = [slugid(), slugid(), slugid()];
    // at once, so they share a batch
    await Promise.all(ids.map((taskId, i) =>
      queue.createTask(taskId, taskDef({ taskQueueId, routes: i === 0 ? [] : ['r.one', 'r.two'], tags: { n: String(i) }, priority: 'high' }))));
    for (const taskId of ids) {
      const t = (await loadTask(q.service.ctx.db, taskId))!;
      assert.equal(t.runs.length, 1);
      const expected = newTaskMessages(t.task, t.runs[0]).messages;
      const rows = await outboxRows(q.service.ctx.db, { taskId });
      assert.equal(rows.length, 2, taskId);
      rows.forEach((row, i) => {
        const m = expected[i]!;
        assert.equal(row.exchange, `${q.config.exchangePrefix}${m.exchange}`);
        assert.equal(row.routing_key, m.routingKey);
        assert.deepEqual(row.cc, m.cc);
        assert.deepEqual(row.body, m.body);
        assertValidMessage(row);
      });
    }
  });
});
