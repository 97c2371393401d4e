// cancelTask, rerunTask and scheduleTask: each from every state, idempotent repeats, the 50-run
// cap, the deadline, the messages, and the scheduler/project scopes they accept.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { rejectsWith } from './harness/http.js';
import { resetClock, shiftClock } from './harness/clock.js';
import { invariantViolations } from './harness/invariants.js';
import { taskMessages } from './harness/messages.js';

describe('cancelTask, rerunTask, scheduleTask', () => {
  let q: TestQueue;
  before(async () => {
    // no loops: the clock is moved here, and the resolvers must not act on it
    q = await startTestQueue({ claimWorkTimeoutSec: 1, enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });

  const exchanges = async (taskId: string) => (await taskMessages(q.service.ctx.db, taskId)).map((m) => m.exchange);
  const lastMessage = async (taskId: string) => (await taskMessages(q.service.ctx.db, taskId)).at(-1)!;

  async function pending(overrides: Record<string, unknown> = {}) {
    const taskId = slugid();
    const taskQueueId = (overrides.taskQueueId as string | undefined) ?? uniqueQueue();
    await q.queue().createTask(taskId, taskDef({ taskQueueId, ...overrides }));
    return { taskId, taskQueueId };
  }
  async function running(overrides: Record<string, unknown> = {}) {
    const { taskId, taskQueueId } = await pending(overrides);
    const { tasks } = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
    return { taskId, taskQueueId, wq: q.queue({ credentials: tasks[0].credentials }) };
  }
  /** A task blocked on a pending dependency: unscheduled. */
  async function unscheduled(overrides: Record<string, unknown> = {}) {
    const dep = await pending();
    return pending({ dependencies: [dep.taskId], ...overrides });
  }

  describe('cancelTask', () => {
    it('gives an unscheduled task a synthetic exception run', async () => {
      const { taskId } = await unscheduled();
      assert.equal((await q.queue().status(taskId)).status.state, 'unscheduled');
      const { status } = await q.queue().cancelTask(taskId);
      assert.equal(status.state, 'exception');
      assert.equal(status.runs.length, 1);
      const run = status.runs[0];
      assert.equal(run.reasonCreated, 'exception');
      assert.equal(run.reasonResolved, 'canceled');
      assert.equal(run.scheduled, run.resolved);
      assert.equal(run.workerId, undefined);
      assert.deepEqual(await exchanges(taskId), ['task-defined', 'task-exception']);
      const msg = await lastMessage(taskId);
      assert.equal(msg.body.runId, 0);
      assert.equal(msg.body.workerId, undefined);
      assert.deepEqual(msg.body.status, status);
    });

    it('resolves a pending run, and takes it out of the claimable set', async () => {
      const { taskId, taskQueueId } = await pending();
      const { status } = await q.queue().cancelTask(taskId);
      assert.equal(status.state, 'exception');
      assert.equal(status.runs[0].reasonCreated, 'scheduled');
      assert.equal(status.runs[0].reasonResolved, 'canceled');
      assert.deepEqual(await exchanges(taskId), ['task-defined', 'task-pending', 'task-exception']);
      assert.equal((await lastMessage(taskId)).row.routing_key.split('.').slice(2, 5).join('.'), '0._._');
      const { tasks } = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
      assert.deepEqual(tasks, []);
    });

    it('resolves a running run; the worker then gets 409 on reclaim and report', async () => {
      const { taskId, wq } = await running();
      const { status } = await q.queue().cancelTask(taskId);
      assert.equal(status.runs[0].state, 'exception');
      assert.equal(status.runs[0].reasonResolved, 'canceled');
      assert.equal(status.runs[0].workerId, 'w1');
      const msg = await lastMessage(taskId);
      assert.equal(msg.exchange, 'task-exception');
      assert.equal(msg.body.workerGroup, 'wg');
      assert.equal(msg.body.workerId, 'w1');
      await rejectsWith(wq.reclaimTask(taskId, 0), 409, 'RequestConflict');
      await rejectsWith(wq.reportCompleted(taskId, 0), 409, 'RequestConflict');
    });

    it('is idempotent, and leaves resolved tasks alone', async () => {
      const { taskId } = await pending();
      const first = await q.queue().cancelTask(taskId);
      const again = await q.queue().cancelTask(taskId);
      assert.deepEqual(again.status, first.status);
      assert.deepEqual(await exchanges(taskId), ['task-defined', 'task-pending', 'task-exception']);
      const done = await running();
      const completed = await done.wq.reportCompleted(done.taskId, 0);
      assert.deepEqual((await q.queue().cancelTask(done.taskId)).status, completed.status);
    });

    it('keeps a single task-group-resolved for the group', async () => {
      const { taskId } = await pending();
      await q.queue().cancelTask(taskId);
      await q.queue().cancelTask(taskId);
      const rows = (await taskMessages(q.service.ctx.db, taskId)).length;
      assert.equal(rows, 3);
      const groups = await q.service.ctx.db.selectFrom('outbox').select('body').where('exchange', 'like', '%task-group-resolved').execute();
      assert.equal(groups.filter((g) => (g.body as any).taskGroupId === taskId).length, 1);
    });
  });

  describe('rerunTask', () => {
    it('adds a pending rerun run to a resolved task, which can be claimed again', async () => {
      for (const resolve of ['completed', 'failed', 'exception'] as const) {
        const { taskId, taskQueueId, wq } = await running({ retries: 3 });
        if (resolve === 'completed') await wq.reportCompleted(taskId, 0);
        else if (resolve === 'failed') await wq.reportFailed(taskId, 0);
        else await q.queue().cancelTask(taskId);
        const { status } = await q.queue().rerunTask(taskId);
        assert.equal(status.state, 'pending');
        assert.equal(status.runs.length, 2);
        assert.equal(status.runs[1].reasonCreated, 'rerun');
        assert.equal(status.retriesLeft, 3);
        const msg = await lastMessage(taskId);
        assert.equal(msg.exchange, 'task-pending');
        assert.equal(msg.body.runId, 1);
        const group = await q.service.ctx.db.selectFrom('task_groups').select('unresolved').where('task_group_id', '=', taskId).executeTakeFirstOrThrow();
        assert.equal(group.unresolved, 1);
        const { tasks } = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w2', tasks: 1 });
        assert.equal(tasks[0].runId, 1);
      }
    });

    it('leaves a pending or running task as it is', async () => {
      const p = await pending();
      const before = await q.queue().status(p.taskId);
      assert.deepEqual((await q.queue().rerunTask(p.taskId)).status, before.status);
      const r = await running();
      const beforeRunning = await q.queue().status(r.taskId);
      assert.deepEqual((await q.queue().rerunTask(r.taskId)).status, beforeRunning.status);
      assert.deepEqual(await exchanges(r.taskId), ['task-defined', 'task-pending', 'task-running']);
    });

    it('schedules an unscheduled task', async () => {
      const { taskId } = await unscheduled();
      const { status } = await q.queue().rerunTask(taskId);
      assert.equal(status.state, 'pending');
      assert.equal(status.runs[0].reasonCreated, 'rerun');
    });

    it('stops at 50 runs: retries never pass the cap, and a rerun there is a 409', async () => {
      const { taskId, taskQueueId } = await pending({ retries: 5 });
      // cancel + rerun up to 46 runs
      for (let run = 0; run < 45; run++) {
        await q.queue().cancelTask(taskId);
        await q.queue().rerunTask(taskId);
      }
      await q.queue().cancelTask(taskId);
      const { status } = await q.queue().rerunTask(taskId);
      assert.equal(status.runs.length, 47);
      assert.equal(status.retriesLeft, 3, 'retries are capped so that runs stay within 50');
      // worker-shutdown until the retries run out
      for (;;) {
        const { tasks } = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
        const r = await q.queue({ credentials: tasks[0].credentials }).reportException(taskId, tasks[0].runId, { reason: 'worker-shutdown' });
        if (r.status.state === 'exception') break;
      }
      const final = (await q.queue().status(taskId)).status;
      assert.equal(final.runs.length, 50);
      await rejectsWith(q.queue().rerunTask(taskId), 409, 'RequestConflict', /Maximum number of runs/);
      assert.deepEqual(await invariantViolations(q.service.ctx.db, [taskId]), []);
    });
  });

  describe('scheduleTask', () => {
    it('makes an unscheduled task with unresolved dependencies pending', async () => {
      const { taskId, taskQueueId } = await unscheduled();
      const { status } = await q.queue().scheduleTask(taskId);
      assert.equal(status.state, 'pending');
      assert.equal(status.runs[0].reasonCreated, 'scheduled');
      assert.deepEqual(await exchanges(taskId), ['task-defined', 'task-pending']);
      assert.deepEqual((await lastMessage(taskId)).body.status, status);
      const { tasks } = await q.queue().claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
      assert.equal(tasks[0].status.taskId, taskId);
    });

    it('changes nothing for a task that has runs', async () => {
      for (const make of [pending, running]) {
        const { taskId } = await make();
        const before = await q.queue().status(taskId);
        const messages = await exchanges(taskId);
        assert.deepEqual((await q.queue().scheduleTask(taskId)).status, before.status);
        assert.deepEqual(await exchanges(taskId), messages);
      }
    });
  });

  it('all three are 409 past the deadline and 404 for an unknown task', async () => {
    const a = await unscheduled({ deadline: new Date(Date.now() + 120_000).toISOString() });
    const b = await running({ deadline: new Date(Date.now() + 120_000).toISOString() });
    await b.wq.reportCompleted(b.taskId, 0);
    shiftClock(q, 180_000);
    try {
      await rejectsWith(q.queue().scheduleTask(a.taskId), 409, 'RequestConflict', /deadline/);
      await rejectsWith(q.queue().cancelTask(a.taskId), 409, 'RequestConflict', /deadline/);
      await rejectsWith(q.queue().rerunTask(b.taskId), 409, 'RequestConflict', /deadline/);
    } finally {
      resetClock(q);
    }
    assert.equal((await q.queue().status(a.taskId)).status.state, 'unscheduled');
    for (const m of ['scheduleTask', 'cancelTask', 'rerunTask']) {
      await rejectsWith(q.queue()[m](slugid()), 404, 'ResourceNotFound');
    }
  });

  describe('scopes', () => {
    for (const [method, verb] of [['cancelTask', 'cancel-task'], ['rerunTask', 'rerun-task'], ['scheduleTask', 'schedule-task']] as const) {
      it(`${method} takes ${verb} by id, by project, or by verb plus assume:scheduler-id`, async () => {
        const taskGroupId = slugid();
        const make = () => unscheduled({ schedulerId: 'sch', projectId: 'proj', taskGroupId });
        const accepted = (taskId: string) => [
          [`queue:${verb}:sch/${taskGroupId}/${taskId}`],
          [`queue:${verb}-in-project:proj`],
          [`queue:${verb}`, `assume:scheduler-id:sch/${taskGroupId}`],
        ];
        const refused = (taskId: string) => [
          [],
          [`queue:${verb}:sch/${taskGroupId}/${slugid()}`],
          [`queue:${verb}-in-project:other`],
          [`queue:${verb}`],
          [`assume:scheduler-id:sch/${taskGroupId}`],
          [`queue:${verb}:other/${taskGroupId}/${taskId}`],
        ];
        const { taskId } = await make();
        for (const scopes of refused(taskId)) {
          await rejectsWith(q.queue({ authorizedScopes: scopes })[method](taskId), 403, 'InsufficientScopes', undefined);
        }
        for (const scopes of accepted(taskId)) {
          const t = await make();
          const { status } = await q.queue({ authorizedScopes: scopes.map((s) => s.replace(taskId, t.taskId)) })[method](t.taskId);
          assert.notEqual(status.state, 'unscheduled', `${method} with ${scopes.join(', ')}`);
        }
      });
    }
  });
});
