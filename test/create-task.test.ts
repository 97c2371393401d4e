// createTask: the happy path, idempotency, conflicts, every validation rule (with nothing stored
// on refusal), the scopes it needs, task groups, and the messages it commits.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { rawRequest, rejectsWith } from './harness/http.js';
import { invariantViolations, tableCounts } from './harness/invariants.js';
import { taskMessages } from './harness/messages.js';

const minutes = (n: number) => new Date(Date.now() + n * 60_000).toISOString();

describe('createTask', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ maxTaskDeadlineDays: 5 });
  });
  after(async () => {
    await q?.stop();
  });

  /** The call must fail with status/code, and the database must be exactly as before. */
  async function refused(taskId: string, body: object, status: number, code: string, message?: RegExp, queue = q.queue()) {
    const before = await tableCounts(q.service.ctx.db);
    await rejectsWith(queue.createTask(taskId, body), status, code, message);
    assert.deepEqual(await tableCounts(q.service.ctx.db), before, 'a refused createTask stored something');
  }

  it('creates a pending task with every default filled in', async () => {
    const taskId = slugid();
    const def = taskDef({ taskQueueId: 'prov-a/wt-a', deadline: minutes(60) });
    const { status } = await q.queue().createTask(taskId, def);
    assert.equal(status.taskId, taskId);
    assert.equal(status.state, 'pending');
    assert.equal(status.provisionerId, 'prov-a');
    assert.equal(status.workerType, 'wt-a');
    assert.equal(status.taskQueueId, 'prov-a/wt-a');
    assert.equal(status.schedulerId, '-');
    assert.equal(status.projectId, 'none');
    assert.equal(status.taskGroupId, taskId);
    assert.equal(status.retriesLeft, 5);
    assert.equal(status.runs.length, 1);
    assert.deepEqual(Object.keys(status.runs[0]).sort(), ['reasonCreated', 'runId', 'scheduled', 'state']);
    assert.equal(status.runs[0].reasonCreated, 'scheduled');

    const task = await q.queue().task(taskId);
    const deadline = new Date(def.deadline as string);
    assert.deepEqual(task, {
      provisionerId: 'prov-a', workerType: 'wt-a', taskQueueId: 'prov-a/wt-a', schedulerId: '-', projectId: 'none',
      taskGroupId: taskId, dependencies: [], requires: 'all-completed', routes: [], priority: 'lowest', retries: 5,
      created: new Date(def.created as string).toISOString(), deadline: deadline.toISOString(),
      expires: new Date(deadline.getTime() + 365 * 24 * 3600 * 1000).toISOString(),
      scopes: [], payload: {}, metadata: def.metadata, tags: {}, extra: {},
    });

    const db = q.service.ctx.db;
    assert.equal((await db.selectFrom('pending').selectAll().where('task_id', '=', taskId).execute()).length, 1);
    assert.equal((await db.selectFrom('task_deadlines').selectAll().where('task_id', '=', taskId).execute()).length, 1);
    const group = await db.selectFrom('task_groups').selectAll().where('task_group_id', '=', taskId).executeTakeFirstOrThrow();
    assert.equal(group.scheduler_id, '-');
    assert.equal(group.unresolved, 1);

    const msgs = await taskMessages(db, taskId);
    assert.deepEqual(msgs.map((m) => m.exchange), ['task-defined', 'task-pending']);
    assert.equal(msgs[0]!.body.status.state, 'unscheduled');
    assert.deepEqual(msgs[0]!.body.status.runs, []);
    assert.equal(msgs[0]!.body.runId, undefined);
    assert.equal(msgs[1]!.body.runId, 0);
    assert.deepEqual(msgs[1]!.body.status, status);
    assert.deepEqual(msgs[1]!.body.task, { tags: {} });
    assert.deepEqual(await invariantViolations(db, [taskId]), []);
  });

  it('carries routes as CC and tags in the messages', async () => {
    const taskId = slugid();
    await q.queue().createTask(taskId, taskDef({ routes: ['index.x.y', 'notify.z'], tags: { kind: 'build' } }));
    const msgs = await taskMessages(q.service.ctx.db, taskId);
    for (const m of msgs) {
      assert.deepEqual(m.row.cc, ['route.index.x.y', 'route.notify.z']);
      assert.deepEqual(m.body.task, { tags: { kind: 'build' } });
    }
  });

  it('answers an identical repeat with 200 and the current status, and stores nothing more', async () => {
    const taskId = slugid();
    const def = taskDef({ routes: ['r.1'], extra: { a: [1, 2, { b: null }] }, payload: { x: 1.5, y: 'z' } });
    const first = await q.queue().createTask(taskId, def);
    const counts = await tableCounts(q.service.ctx.db);
    const again = await q.queue().createTask(taskId, def);
    assert.deepEqual(again, first);
    assert.deepEqual(await tableCounts(q.service.ctx.db), counts);
  });

  it('treats the same instants written with another precision, offset or key order as identical', async () => {
    const taskId = slugid();
    const created = new Date(Math.floor(Date.now() / 1000) * 1000 + 120);
    const deadline = new Date(created.getTime() + 3600_000);
    const def = taskDef({
      created: created.toISOString(), deadline: deadline.toISOString(), payload: { a: 1, b: 2 },
    });
    const first = await q.queue().createTask(taskId, def);
    const iso = created.toISOString();
    const variants = [
      // microseconds
      { created: iso.replace('Z', '000Z'), deadline: deadline.toISOString().replace('Z', '000Z') },
      // the same instant written at +01:00
      { created: new Date(created.getTime() + 3600_000).toISOString().replace('Z', '+01:00'), deadline: deadline.toISOString() },
      // legacy queue fields; payload keys reordered
      { taskQueueId: undefined, provisionerId: 'test-prov', workerType: 'test-wt', payload: { b: 2, a: 1 } },
      // all three queue fields, consistent
      { provisionerId: 'test-prov', workerType: 'test-wt' },
      // the defaults spelled out
      { schedulerId: '-', projectId: 'none', taskGroupId: taskId, retries: 5, priority: 'lowest', tags: {}, extra: {}, routes: [], scopes: [], dependencies: [], requires: 'all-completed' },
    ];
    for (const v of variants) {
      const body = { ...def, ...v } as Record<string, unknown>;
      for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
      const again = await q.queue().createTask(taskId, body);
      assert.deepEqual(again.status, first.status, JSON.stringify(v));
    }
  });

  it('refuses a different definition under the same taskId with 409, changing nothing', async () => {
    const taskId = slugid();
    const def = taskDef();
    await q.queue().createTask(taskId, def);
    for (const change of [
      { payload: { different: true } },
      { priority: 'low' },
      { retries: 4 },
      { deadline: minutes(24 * 60 + 1) },
      { metadata: { ...(def.metadata as object), name: 'another name' } },
      { taskQueueId: 'test-prov/other-wt' },
      { routes: ['x'] },
      { tags: { a: 'b' } },
    ]) {
      await refused(taskId, { ...def, ...change }, 409, 'RequestConflict');
    }
  });

  it('an identical repeat with numbers JSON cannot keep apart (-0, 1e400) is still identical', async () => {
    const taskId = slugid();
    const body = JSON.stringify(taskDef({ payload: { zero: 0, big: 0 } })).replace('"zero":0', '"zero":-0').replace('"big":0', '"big":1e400');
    const put = () => rawRequest(q.rootUrl, {
      method: 'PUT', path: `/api/queue/v1/task/${taskId}`, credentials: q.credentials, body,
      headers: { 'content-type': 'application/json' },
    });
    const first = await put();
    assert.equal(first.status, 200, first.text);
    const again = await put();
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(again.body, first.body);
  });

  describe('refuses bad definitions with 400 and stores nothing', () => {
    const cases: Array<[string, Record<string, unknown>, string, RegExp?]> = [
      ['created 16 minutes ago', { created: minutes(-16) }, 'InputError', /created/],
      ['created 16 minutes ahead', { created: minutes(16), deadline: minutes(60) }, 'InputError', /created/],
      ['a deadline in the past', { created: minutes(-10), deadline: minutes(-1) }, 'InputError', /deadline/],
      ['a deadline past the maximum', { deadline: minutes(5 * 24 * 60 + 20) }, 'InputError', /deadline/],
      ['a deadline before created', { created: minutes(10), deadline: minutes(5) }, 'InputError', /deadline/],
      ['expires before the deadline', { deadline: minutes(60), expires: minutes(30) }, 'InputError', /expires/],
      ['a scope ending in **', { scopes: ['queue:**'] }, 'InputError', /\*\*/],
      ['more scopes than fit in its credentials', { scopes: Array.from({ length: 4000 }, (_, i) => `secrets:get:some/long/path/to/a/secret/number-${i}`) }, 'InputError', /scopes/],
      ['priority normal', { priority: 'normal' }, 'InputValidationError', /priority/],
      ['an unknown priority', { priority: 'urgent' }, 'InputValidationError'],
      ['provisionerId/workerType that do not match taskQueueId', { provisionerId: 'test-prov', workerType: 'other' }, 'InputError', /match/],
      ['no task queue at all', { taskQueueId: undefined }, 'InputError', /taskQueueId/],
      ['provisionerId without workerType', { taskQueueId: undefined, provisionerId: 'test-prov' }, 'InputError'],
      ['workerType without provisionerId', { taskQueueId: undefined, workerType: 'test-wt' }, 'InputError'],
      ['a malformed taskQueueId', { taskQueueId: 'no-slash' }, 'InputValidationError'],
      ['an uppercase workerType', { taskQueueId: 'prov/WT' }, 'InputValidationError'],
      ['a metadata.source that is not a URL', { metadata: { name: 'n', description: 'd', owner: 'o', source: 'ftp://x' } }, 'InputValidationError', /source/],
      ['missing metadata fields', { metadata: { name: 'n' } }, 'InputValidationError'],
      ['an extra metadata property', { metadata: { name: 'n', description: 'd', owner: 'o', source: 'https://x', more: 1 } }, 'InputValidationError'],
      ['an unknown top-level property', { surprise: true }, 'InputValidationError', /surprise/],
      ['a payload that is not an object', { payload: [1] }, 'InputValidationError'],
      ['no payload', { payload: undefined }, 'InputValidationError'],
      ['no created', { created: undefined }, 'InputValidationError'],
      ['retries over 49', { retries: 50 }, 'InputValidationError'],
      ['negative retries', { retries: -1 }, 'InputValidationError'],
      ['a bad taskGroupId', { taskGroupId: 'not-a-slugid' }, 'InputValidationError'],
      ['a bad dependency id', { dependencies: ['nope'] }, 'InputValidationError'],
      ['duplicate routes', { routes: ['a', 'a'] }, 'InputValidationError'],
      ['a bad schedulerId', { schedulerId: 'a.b' }, 'InputValidationError'],
      ['a non-string tag', { tags: { a: 1 } }, 'InputValidationError'],
      ['a created that is not a date', { created: 'yesterday' }, 'InputValidationError'],
      ['a leap second JavaScript cannot read', { deadline: `${new Date(Date.now() + 86400_000).toISOString().slice(0, 10)}T23:59:60Z` }, 'InputError', /deadline/],
      ['an hour-only offset JavaScript cannot read', { created: new Date().toISOString().slice(0, 19) + '+00' }, 'InputError', /created/],
      ['a NUL character PostgreSQL cannot store', { payload: { cmd: 'a\u0000b' } }, 'InputValidationError', /NUL|\\u0000/],
      ['a NUL character in a key', { extra: { 'a\u0000': 'b' } }, 'InputValidationError'],
      ['a lone surrogate PostgreSQL cannot store', { metadata: { name: 'x\ud800', description: 'd', owner: 'o', source: 'https://x' } }, 'InputValidationError'],
    ];
    for (const [what, change, code, message] of cases) {
      it(what, async () => {
        const body = taskDef(change);
        for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
        await refused(slugid(), body, 400, code, message);
      });
    }

    it('a taskId that is not a slugid', async () => {
      await refused('not-a-slugid', taskDef(), 400, 'InvalidRequestArguments');
    });

    it('accepts the limits themselves: created 14 min either way, deadline at the maximum', async () => {
      await q.queue().createTask(slugid(), taskDef({ created: minutes(-14) }));
      await q.queue().createTask(slugid(), taskDef({ created: minutes(14), deadline: minutes(60) }));
      await q.queue().createTask(slugid(), taskDef({ deadline: minutes(5 * 24 * 60 + 10) }));
      await q.queue().createTask(slugid(), taskDef({ deadline: minutes(60), expires: minutes(60) }));
      await q.queue().createTask(slugid(), taskDef({ metadata: { name: 'n', description: 'd', owner: 'o', source: 'ssh://host/x' } }));
      await q.queue().createTask(slugid(), taskDef({ metadata: { name: 'n', description: 'd', owner: 'o', source: 'git@host:x' } }));
    });
  });

  describe('scopes', () => {
    const base = (queue: string, priority = 'lowest') => [
      'queue:create-task:project:none', 'queue:scheduler-id:-', `queue:create-task:${priority}:${queue}`,
    ];

    it('needs create-task for the priority or a higher one', async () => {
      const queue = uniqueQueue();
      const client = q.queue({ authorizedScopes: base(queue, 'high') });
      for (const priority of ['high', 'medium', 'low', 'very-low', 'lowest']) {
        const { status } = await client.createTask(slugid(), taskDef({ taskQueueId: queue, priority }));
        assert.equal(status.state, 'pending');
      }
      for (const priority of ['highest', 'very-high']) {
        await refused(slugid(), taskDef({ taskQueueId: queue, priority }), 403, 'InsufficientScopes', undefined, client);
      }
      // a create-task scope for another queue does not help
      await refused(slugid(), taskDef({ priority: 'high' }), 403, 'InsufficientScopes', undefined, client);
    });

    it('needs queue:route:<route> for each route', async () => {
      const queue = uniqueQueue();
      const def = taskDef({ taskQueueId: queue, routes: ['index.a', 'index.b'] });
      await refused(slugid(), def, 403, 'InsufficientScopes', /queue:route:index.b/, q.queue({ authorizedScopes: [...base(queue), 'queue:route:index.a'] }));
      await q.queue({ authorizedScopes: [...base(queue), 'queue:route:index.*'] }).createTask(slugid(), def);
    });

    it("needs every one of the task's scopes", async () => {
      const queue = uniqueQueue();
      const def = taskDef({ taskQueueId: queue, scopes: ['secrets:get:a', 'docker:capability:privileged'] });
      await refused(slugid(), def, 403, 'InsufficientScopes', undefined, q.queue({ authorizedScopes: [...base(queue), 'secrets:get:a'] }));
      await q.queue({ authorizedScopes: [...base(queue), 'secrets:get:*', 'docker:capability:privileged'] }).createTask(slugid(), def);
    });

    it('needs the scheduler-id and project scopes', async () => {
      const queue = uniqueQueue();
      const def = taskDef({ taskQueueId: queue, schedulerId: 'sched-1', projectId: 'proj/x' });
      const ok = ['queue:create-task:project:proj/x', 'queue:scheduler-id:sched-1', `queue:create-task:lowest:${queue}`];
      await refused(slugid(), def, 403, 'InsufficientScopes', /scheduler-id/, q.queue({ authorizedScopes: [ok[0]!, ok[2]!] }));
      await refused(slugid(), def, 403, 'InsufficientScopes', /project/, q.queue({ authorizedScopes: [ok[1]!, ok[2]!] }));
      await q.queue({ authorizedScopes: ok }).createTask(slugid(), def);
    });

    it('checks the body before the scopes: an anonymous invalid body is a 400, a valid one a 403', async () => {
      const anon = new taskcluster.Queue({ rootUrl: q.rootUrl, retries: 0 });
      await refused(slugid(), taskDef({ priority: 'normal' }), 400, 'InputValidationError', undefined, anon);
      await refused(slugid(), taskDef(), 403, 'InsufficientScopes', undefined, anon);
    });
  });

  describe('task groups', () => {
    it('are created on first use and keep their schedulerId: another one is a 409', async () => {
      const group = slugid();
      const a = slugid();
      await q.queue().createTask(a, taskDef({ taskGroupId: group, schedulerId: 'sched-a' }));
      await q.queue().createTask(slugid(), taskDef({ taskGroupId: group, schedulerId: 'sched-a' }));
      await refused(slugid(), taskDef({ taskGroupId: group, schedulerId: 'sched-b' }), 409, 'RequestConflict', /schedulerId/);
      const row = await q.service.ctx.db.selectFrom('task_groups').selectAll().where('task_group_id', '=', group).executeTakeFirstOrThrow();
      assert.equal(row.scheduler_id, 'sched-a');
      assert.equal(row.unresolved, 2);
    });

    it('last at least as long as their longest-lived task', async () => {
      const group = slugid();
      await q.queue().createTask(slugid(), taskDef({ taskGroupId: group, expires: minutes(60 * 24 * 10) }));
      await q.queue().createTask(slugid(), taskDef({ taskGroupId: group, expires: minutes(60 * 24 * 2) }));
      const row = await q.service.ctx.db.selectFrom('task_groups').selectAll().where('task_group_id', '=', group).executeTakeFirstOrThrow();
      assert.ok(new Date(row.expires).getTime() >= new Date(minutes(60 * 24 * 10)).getTime() - 60_000);
    });
  });

  it('leaves the state machine invariants intact', async () => {
    assert.deepEqual(await invariantViolations(q.service.ctx.db), []);
  });
});
