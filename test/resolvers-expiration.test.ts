// Expiration: tasks, runs, dependency edges, deadlines, groups, workers, task queues and published
// outbox rows past their expires plus the grace period are deleted in batches. Time moves through the clock the loop reads.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import type { Ctx } from '../services/queue/src/context.js';
import { resolveDeadlines } from '../services/queue/src/resolvers/deadlines.js';
import { expireAll } from '../services/queue/src/resolvers/expiration.js';
import { relayLockKey } from '../services/queue/src/outbox/relay.js';
import { claimAndResolve, cloneUnscheduled, create } from './harness/graph.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';

describe('expiration', () => {
  let q: TestQueue;
  before(async () => {
    // the loops of this service stay off: the test runs them at the times it chooses
    q = await startTestQueue({ enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });
  const db = () => q.service.ctx.db;
  const at = (ms: number): Ctx => ({ ...q.service.ctx, clock: { now: () => new Date(ms) } });
  const count = async (table: string, column: string, ids: string[]) =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.table(table)} WHERE ${sql.ref(column)} = ANY(${ids})`.execute(db())).rows[0]!.n;

  it('deletes expired tasks with everything that hangs off them, and frees the group', async () => {
    const hour = 3600_000;
    const grace = q.config.expirationGraceSec * 1000;
    const now = Date.now();
    const taskGroupId = slugid();
    const short = { taskGroupId, schedulerId: 'first', deadline: new Date(now + hour).toJSON(), expires: new Date(now + 2 * hour).toJSON() };
    const taskQueueId = uniqueQueue();
    const done = await create(q, { ...short, taskQueueId });
    await claimAndResolve(q, taskQueueId, 'completed', { taskId: done });
    const unresolved = await create(q, { ...short, taskQueueId: uniqueQueue() });
    const dependent = await create(q, { ...short, taskQueueId: uniqueQueue(), dependencies: [unresolved] });
    const keeper = await create(q, { taskQueueId: uniqueQueue(), expires: new Date(now + 30 * 24 * hour).toJSON() });
    const ids = [done, unresolved, dependent];

    // before expires + grace nothing goes
    assert.equal((await expireAll(at(now + 2 * hour + grace - 1000))).handled, 0);
    // past it, tasks wait for the deadline loop to be done with them (none of them is, yet)
    const later = at(now + 2 * hour + grace + 1000);
    const first = await expireAll(later);
    assert.equal(first.deleted.tasks, 0);
    // an edge goes with its own expires (its dependent's), which is past its deadline
    assert.equal(first.deleted['task-dependencies'], 1);
    assert.equal((await resolveDeadlines(later)).handled, 2, 'the unresolved task and its dependent');
    const result = await expireAll(later);
    assert.equal(result.deleted.tasks, 3);
    assert.equal(result.deleted['task-groups'], 1);

    assert.equal(await count('tasks', 'task_id', ids), 0);
    assert.equal(await count('runs', 'task_id', ids), 0);
    assert.equal(await count('task_deadlines', 'task_id', ids), 0);
    assert.equal(await count('pending', 'task_id', ids), 0);
    assert.equal(await count('task_dependencies', 'dependent_task_id', ids), 0);
    assert.equal(await count('task_groups', 'task_group_id', [taskGroupId]), 0);
    assert.equal(await count('tasks', 'task_id', [keeper]), 1);
    await assert.rejects(q.queue().task(done), (err: any) => err.statusCode === 404);
    await assert.rejects(q.queue().getTaskGroup(taskGroupId), (err: any) => err.statusCode === 404);
    // the group id is free again, even for another schedulerId
    await q.queue().createTask(slugid(), taskDef({ taskGroupId, schedulerId: 'second' }));
    assert.equal((await q.queue().getTaskGroup(taskGroupId)).schedulerId, 'second');
  });

  it('works through more than one batch', async () => {
    const hour = 3600_000;
    const now = Date.now();
    const times = { deadline: new Date(now + hour).toJSON(), expires: new Date(now + hour).toJSON() };
    const root = await create(q, { ...times, taskQueueId: uniqueQueue() });
    const template = await create(q, { ...times, taskQueueId: uniqueQueue(), dependencies: [root] });
    const ids = [root, template, ...Array.from({ length: 1500 }, () => slugid())];
    await cloneUnscheduled(db(), template, ids.slice(2).map((taskId) => ({ taskId, dependencies: [root] })));
    const later = at(now + hour + q.config.expirationGraceSec * 1000 + 1000);
    // stand-in for the deadline loop, which the test above runs: done with these deadlines
    await sql`DELETE FROM task_deadlines WHERE task_id = ANY(${ids})`.execute(db());

    const first = await expireAll(later);
    assert.equal(first.full, true);
    assert.equal(first.deleted.tasks, 1000);
    let rounds = 1;
    while ((await expireAll(later)).full) rounds++;
    assert.ok(rounds <= 3);
    assert.equal(await count('tasks', 'task_id', ids), 0);
    assert.equal(await count('task_dependencies', 'required_task_id', [root]), 0);
  });

  it('prunes published outbox rows older than the retention, oldest first, never unpublished ones', async () => {
    const retention = q.config.outboxRetentionSec * 1000;
    const now = Date.now();
    await create(q);
    const rows = await sql<{ id: string }>`SELECT id FROM outbox ORDER BY id`.execute(db());
    assert.ok(rows.rows.length > 3);
    const [oldest, unpublished, ...rest] = rows.rows.map((r) => r.id);
    // no relay runs here (loops off): mark rows as the relay would
    await sql`UPDATE outbox SET published = ${new Date(now - retention - 60_000)} WHERE id = ANY(${[oldest!, ...rest.slice(0, -1)]}::bigint[])`.execute(db());
    await sql`UPDATE outbox SET published = ${new Date(now)} WHERE id = ${rest[rest.length - 1]!}`.execute(db());
    let deleted = 0;
    for (let n; (n = (await expireAll(at(now))).deleted.outbox!) > 0; ) deleted += n;
    assert.equal(deleted, rows.rows.length - 2);
    const left = await sql<{ id: string }>`SELECT id FROM outbox ORDER BY id`.execute(db());
    assert.deepEqual(left.rows.map((r) => r.id), [unpublished, rest[rest.length - 1]]);
  });

  it('forgets workers and task queues a grace period after they expire, keeping quarantined workers until their quarantine ends', async () => {
    const day = 24 * 3600_000;
    const grace = q.config.expirationGraceSec * 1000;
    const now = Date.now();
    const taskQueueId = uniqueQueue();
    const [prov, wt] = taskQueueId.split('/') as [string, string];
    // declareWorker sets the worker's and the queue's expires; quarantine one for 10 days
    for (const id of ['idle', 'jailed']) {
      await q.queue().declareWorker(prov, wt, 'wg', id, { expires: new Date(now + day).toJSON() });
    }
    await q.queue().quarantineWorker(prov, wt, 'wg', 'jailed', {
      quarantineUntil: new Date(now + 10 * day).toJSON(), quarantineInfo: 'flaky disk',
    });
    const workerIds = async () =>
      (await sql<{ worker_id: string }>`SELECT worker_id FROM workers WHERE task_queue_id = ${taskQueueId} ORDER BY worker_id`.execute(db())).rows.map((r) => r.worker_id);

    // expired but within the grace: kept (the counts include other tests' workers, so look at ours)
    await expireAll(at(now + day + grace - 1000));
    assert.deepEqual(await workerIds(), ['idle', 'jailed']);
    assert.equal(await count('task_queues', 'task_queue_id', [taskQueueId]), 1);

    let r = await expireAll(at(now + 2 * day + grace + 1000));
    assert.ok(r.deleted.workers! >= 1);
    assert.deepEqual(await workerIds(), ['jailed']);
    assert.equal(await count('task_queues', 'task_queue_id', [taskQueueId]), 0);
    assert.ok(r.deleted['task-queues']! >= 1);

    // the quarantined one goes once its quarantine is over, plus the grace
    r = await expireAll(at(now + 10 * day + grace + 1000));
    assert.ok(r.deleted.workers! >= 1);
    assert.deepEqual(await workerIds(), []);
  });

  it('without a broker, drops outbox rows past the retention unless a relay elsewhere holds the relay lock', async () => {
    assert.equal(q.config.amqpUrl, undefined, 'this service runs without AMQP_URL');
    const retention = q.config.outboxRetentionSec * 1000;
    const now = Date.now();
    await sql`DELETE FROM outbox`.execute(db());
    await create(q);
    const ids = (await sql<{ id: string }>`SELECT id FROM outbox ORDER BY id`.execute(db())).rows.map((r) => r.id);
    assert.equal(ids.length, 2, 'task-defined and task-pending');
    await sql`UPDATE outbox SET created = ${new Date(now - retention - 60_000)} WHERE id = ${ids[0]!}`.execute(db());

    // a relay in another process holds the lock: nothing of its goes
    const relay = new pg.Client({ connectionString: q.config.databaseUrl });
    await relay.connect();
    try {
      await relay.query('SELECT pg_advisory_lock($1)', [relayLockKey]);
      assert.equal((await expireAll(at(now))).deleted['outbox-unbrokered'], 0);
    } finally {
      await relay.end();
    }
    const r = await expireAll(at(now));
    assert.equal(r.deleted['outbox-unbrokered'], 1);
    assert.deepEqual((await sql<{ id: string }>`SELECT id FROM outbox ORDER BY id`.execute(db())).rows.map((x) => x.id), [ids[1]]);
  });

  it('deletes a resolved pipeline once the task groups of all its stages are gone, never a running one', async () => {
    const hour = 3600_000;
    const grace = q.config.expirationGraceSec * 1000;
    const now = Date.now();
    const taskGroupId = slugid();
    const taskQueueId = uniqueQueue();
    const taskId = await create(q, {
      taskGroupId, taskQueueId, deadline: new Date(now + hour).toJSON(), expires: new Date(now + 2 * hour).toJSON(),
    });
    await claimAndResolve(q, taskQueueId, 'completed', { taskId });
    const pipeline = async (state: string, resolved: Date | null, groups: string[]) => {
      const id = slugid();
      await sql`
        INSERT INTO scheduler_pipelines (pipeline_id, name, definition, scheduler_id, submitted_by, state, created, updated, resolved)
        VALUES (${id}, 'p', '{}', 'sched', 'test', ${state}, ${new Date(now)}, ${new Date(now)}, ${resolved})`.execute(db());
      for (const [stage, group] of groups.entries()) {
        await sql`INSERT INTO scheduler_stages (pipeline_id, stage, task_group_id, state, created)
          VALUES (${id}, ${stage}, ${group}, 'completed', ${new Date(now)})`.execute(db());
      }
      return id;
    };
    const completed = await pipeline('completed', new Date(now), [slugid(), taskGroupId]);
    const failedEarly = await pipeline('failed', new Date(now), []);
    const running = await pipeline('running', null, [slugid()]);
    const ids = [completed, failedEarly, running];

    // resolved within the grace: all stay
    assert.equal((await expireAll(at(now + grace - 1000))).deleted.pipelines, 0);
    // past it: the one without groups goes; the completed one waits for its last group
    assert.equal((await expireAll(at(now + grace + 1000))).deleted.pipelines, 1);
    assert.equal(await count('scheduler_pipelines', 'pipeline_id', ids), 2);
    // the group expires with its task (once the deadline loop is done with it); the pipeline goes
    // in the same pass, with its stages
    const later = at(now + 2 * hour + grace + 1000);
    await resolveDeadlines(later);
    const r = await expireAll(later);
    assert.equal(r.deleted['task-groups'], 1);
    assert.equal(r.deleted.pipelines, 1);
    assert.equal(await count('scheduler_pipelines', 'pipeline_id', ids), 1);
    assert.equal(await count('scheduler_pipelines', 'pipeline_id', [running]), 1);
    assert.equal(await count('scheduler_stages', 'pipeline_id', [completed]), 0);
    // a running pipeline stays, however old
    assert.equal((await expireAll(at(now + 365 * 24 * hour))).deleted.pipelines, 0);
    await sql`DELETE FROM scheduler_pipelines WHERE pipeline_id = ${running}`.execute(db());
  });
});
