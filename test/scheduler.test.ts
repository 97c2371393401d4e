// The pipeline scheduler against a real queue, RabbitMQ and the generic worker: a three-stage
// pipeline runs to its end stage by stage; a failing stage stops it and says why; a scheduler that
// restarts (or crashed half-way through submitting a stage) neither loses nor repeats a stage;
// without RabbitMQ it follows the HTTP event stream; bad or unauthorized submissions are refused.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import type { Worker } from '@conveyor/worker';
import { loadWorkerConfig, startGenericWorker } from '@conveyor/generic-worker';
import { SchedulerClient, stageTasks, startScheduler, taskGroupIdOf, taskIdOf, type Pipeline, type Scheduler } from '@conveyor/scheduler';
import { storeClient } from '../services/queue/src/auth/clients.js';
import { deleteExchanges } from './harness/amqp.js';
import { outboxRows } from './harness/outbox.js';
import { amqpUrl, startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, uniqueQueue } from './harness/tasks.js';
import { waitFor } from './harness/wait.js';

const quiet = { info() {}, warn() {}, error() {} };

describe('pipeline scheduler', () => {
  let q: TestQueue;
  let worker: Worker;
  let workerQueue: string;
  const schedulers: Scheduler[] = [];
  const schedulerId = `sched-${Math.random().toString(36).slice(2, 8)}`;

  before(async () => {
    q = await startTestQueue({ amqpUrl });
    workerQueue = uniqueQueue();
    worker = startGenericWorker(
      loadWorkerConfig({}, { rootUrl: q.rootUrl, clientId: q.credentials.clientId, accessToken: q.credentials.accessToken, taskQueueId: workerQueue, capacity: 4 }),
    );
  });
  // one scheduler at a time: they share a durable queue, and a test must see only its own
  afterEach(async () => {
    for (const s of schedulers.splice(0)) await s.stop();
  });
  after(async () => {
    await worker?.stop({ graceMs: 0 });
    await q?.stop();
    if (q) await deleteExchanges(q.config.exchangePrefix);
    const conn = await amqp.connect(amqpUrl);
    const ch = await conn.createChannel();
    await ch.deleteQueue(`queue/conveyor-scheduler/${schedulerId}/task-group-resolved`);
    await conn.close();
  });

  async function scheduler(opts: { amqp?: boolean; reconcileIntervalMs?: number } = {}): Promise<Scheduler> {
    const s = await startScheduler({
      // an empty AMQP_URL is "no RabbitMQ", as in the queue's own config
      queueConfig: { ...q.config, amqpUrl: opts.amqp === false ? '' : q.config.amqpUrl },
      rootUrl: q.rootUrl,
      credentials: q.credentials,
      schedulerId,
      port: 0,
      // long: these tests show that messages, not the safety-net loop, move pipelines
      reconcileIntervalMs: opts.reconcileIntervalMs ?? 60_000,
      log: quiet,
    });
    schedulers.push(s);
    return s;
  }
  const client = (s: Scheduler, credentials: { clientId: string; accessToken: string } = q.credentials) => new SchedulerClient(s.url, credentials);

  const finished = (c: SchedulerClient, pipelineId: string, timeoutMs = 20_000) =>
    waitFor(`pipeline ${pipelineId} resolved`, async () => {
      const st = await c.status(pipelineId);
      return st.state !== 'running' ? st : undefined;
    }, { timeoutMs, everyMs: 50 });

  it('runs a three-stage pipeline to the end, one sealed task group per stage, each after the last resolved', async () => {
    const s = await scheduler();
    const pipelineId = slugid();
    const pipeline: Pipeline = {
      name: 'three-stages',
      defaults: { taskQueueId: 'built-in/succeed', deadline: '1 hour' },
      stages: [
        { name: 'build', tasks: [{ name: 'compile' }, { name: 'lint' }] },
        {
          name: 'test',
          tasks: [
            { name: 'unit', taskQueueId: workerQueue, payload: { command: ['sh', '-c', 'echo unit tests pass'], maxRunTime: 30 } },
            { name: 'report', dependsOn: ['unit'] },
          ],
        },
        { name: 'deploy', tasks: [{ name: 'ship' }] },
      ],
    };
    const submitted = await client(s).submit(pipelineId, pipeline);
    assert.equal(submitted.state, 'running');
    assert.deepEqual(submitted.stages.map((x) => x.name), ['build', 'test', 'deploy']);

    const done = await finished(client(s), pipelineId);
    assert.equal(done.state, 'completed', JSON.stringify(done));
    assert.deepEqual(done.stages.map((x) => x.state), ['completed', 'completed', 'completed']);
    for (const stage of done.stages) assert.ok(stage.tasks.every((t) => t.state === 'completed'));

    const queue = q.queue();
    let previousResolved = 0;
    for (let i = 0; i < 3; i++) {
      const group = await queue.getTaskGroup(taskGroupIdOf(pipelineId, i));
      assert.ok(group.sealed, `stage ${i} group sealed`);
      assert.equal(group.schedulerId, schedulerId);
      const { tasks } = await queue.listTaskGroup(taskGroupIdOf(pipelineId, i));
      assert.equal(tasks.length, pipeline.stages[i]!.tasks.length);
      const created = Math.min(...tasks.map((t: any) => Date.parse(t.task.created)));
      assert.ok(created >= previousResolved, `stage ${i} created after stage ${i - 1} resolved`);
      previousResolved = Math.max(...tasks.map((t: any) => Date.parse(t.status.runs.at(-1).resolved)));
    }
    // the dependency inside the stage held: report ran after unit
    const unit = (await queue.status(taskIdOf(pipelineId, 1, 'unit'))).status;
    const report = (await queue.status(taskIdOf(pipelineId, 1, 'report'))).status;
    assert.ok(Date.parse(report.runs[0].started) >= Date.parse(unit.runs[0].resolved));
    // one task-group-resolved per stage
    const resolved = (await outboxRows(q.service.ctx.db, { exchange: 'task-group-resolved' })).map((r) => r.body.taskGroupId);
    for (let i = 0; i < 3; i++) assert.equal(resolved.filter((g) => g === taskGroupIdOf(pipelineId, i)).length, 1);
  });

  it('stops at a failing stage, says which task failed, and never starts the next one', async () => {
    const s = await scheduler();
    const pipelineId = slugid();
    await client(s).submit(pipelineId, {
      name: 'fails-in-the-middle',
      defaults: { taskQueueId: 'built-in/succeed' },
      stages: [
        { name: 'one', tasks: [{ name: 'ok' }] },
        { name: 'two', tasks: [{ name: 'fine' }, { name: 'broken', taskQueueId: workerQueue, payload: { command: 'exit 7', maxRunTime: 30 } }] },
        { name: 'three', tasks: [{ name: 'never' }] },
      ],
    });
    const done = await finished(client(s), pipelineId);
    assert.equal(done.state, 'failed');
    const brokenId = taskIdOf(pipelineId, 1, 'broken');
    assert.equal(done.reason, `stage two: task broken (${brokenId}) failed`);
    assert.deepEqual(done.stages.map((x) => x.state), ['completed', 'failed', 'waiting']);
    await assert.rejects(q.queue().getTaskGroup(taskGroupIdOf(pipelineId, 2)), (err: any) => err.statusCode === 404);
    await assert.rejects(q.queue().status(taskIdOf(pipelineId, 2, 'never')), (err: any) => err.statusCode === 404);
  });

  it('fails a pipeline whose task the queue refuses, and refuses a malformed or unauthorized submission', async () => {
    const s = await scheduler();
    const pipelineId = slugid();
    // a payload the generic worker refuses: the stage fails with exception/malformed-payload
    await client(s).submit(pipelineId, {
      name: 'malformed', stages: [{ name: 'only', tasks: [{ name: 'bad', taskQueueId: workerQueue, payload: { command: 42 } }] }],
    });
    const done = await finished(client(s), pipelineId);
    assert.equal(done.state, 'failed');
    assert.match(done.reason!, /task bad \(.*\) exception\/malformed-payload/);

    await assert.rejects(client(s).submit(slugid(), { name: 'x', stages: [{ name: 'a', tasks: [{ name: 't', dependsOn: ['nope'] }] }] }), (err: any) => {
      assert.equal(err.statusCode, 400);
      assert.equal(err.code, 'InputValidationError');
      assert.match(err.message, /depends on nope/);
      return true;
    });
    await assert.rejects(client(s).submit(slugid(), { name: 'x', stages: [{ name: 'a', tasks: [{ name: 't', priority: 'urgent' }] }] }), (err: any) => {
      assert.equal(err.statusCode, 400);
      assert.match(err.message, /priority/);
      return true;
    });
    // a client that may submit pipelines but not create tasks on the queue they name
    const clientId = `sched-test-${slugid()}`;
    const accessToken = 'a-token-for-tests-only-123456';
    await storeClient(q.service.ctx.db, q.config.clientTokenKey!, {
      clientId, accessToken, scopes: ['scheduler:create-pipeline:*', 'queue:create-task:project:none'], expires: new Date(Date.now() + 3600_000),
    });
    const refused = slugid();
    await assert.rejects(
      client(s, { clientId, accessToken }).submit(refused, { name: 'sneaky', stages: [{ name: 'a', tasks: [{ name: 't', taskQueueId: 'built-in/succeed' }] }] }),
      (err: any) => {
        assert.equal(err.statusCode, 403);
        assert.match(err.message, /queue:create-task:lowest:built-in\/succeed/);
        return true;
      },
    );
    await assert.rejects(client(s).status(refused), (err: any) => err.statusCode === 404);
    // the same id again with the same definition is fine; with another, a conflict
    const again = await client(s).submit(pipelineId, {
      name: 'malformed', stages: [{ name: 'only', tasks: [{ name: 'bad', taskQueueId: workerQueue, payload: { command: 42 } }] }],
    });
    assert.equal(again.state, 'failed');
    await assert.rejects(client(s).submit(pipelineId, { name: 'other', stages: [{ name: 'a', tasks: [{ name: 't' }] }] }), (err: any) => err.statusCode === 409);
  });

  it('survives its own restart: a stage resolved while it was down starts the next one exactly once', async () => {
    const manual = uniqueQueue();
    const first = await scheduler();
    const pipelineId = slugid();
    await client(first).submit(pipelineId, {
      name: 'restart',
      stages: [
        { name: 'wait-for-me', tasks: [{ name: 'a', taskQueueId: manual }, { name: 'b', taskQueueId: manual }] },
        { name: 'after', tasks: [{ name: 'c', taskQueueId: 'built-in/succeed' }] },
      ],
    });
    await waitFor('stage one sealed', async () => (await q.queue().getTaskGroup(taskGroupIdOf(pipelineId, 0)).catch(() => undefined))?.sealed);
    await first.stop();

    // stage one resolves while no scheduler runs: its task-group-resolved waits on the durable queue
    const claims = await q.queue().claimWork(manual, { workerGroup: 'g', workerId: 'w', tasks: 2 });
    assert.equal(claims.tasks.length, 2);
    for (const c of claims.tasks) await q.queue({ credentials: c.credentials }).reportCompleted(c.status.taskId, c.runId);

    const second = await scheduler();
    const done = await finished(client(second), pipelineId);
    assert.equal(done.state, 'completed');
    const defined = await outboxRows(q.service.ctx.db, { exchange: 'task-defined' });
    const count = (taskId: string) => defined.filter((r) => r.body.status.taskId === taskId).length;
    assert.equal(count(taskIdOf(pipelineId, 0, 'a')), 1);
    assert.equal(count(taskIdOf(pipelineId, 1, 'c')), 1);
    const stages = await q.service.ctx.db.selectFrom('scheduler_stages').select(['stage', 'state']).where('pipeline_id', '=', pipelineId).orderBy('stage').execute();
    assert.deepEqual(stages, [{ stage: 0, state: 'completed' }, { stage: 1, state: 'completed' }]);
  });

  it('finishes submitting a stage it crashed in the middle of, creating each task once', async () => {
    const pipelineId = slugid();
    const pipeline: Pipeline = {
      name: 'half-submitted',
      defaults: { taskQueueId: 'built-in/succeed' },
      stages: [{ name: 'only', tasks: [{ name: 'x' }, { name: 'y' }, { name: 'z' }] }],
    };
    // what a scheduler leaves behind when it dies after creating one task of three
    const db = q.service.ctx.db;
    const created = new Date();
    await db.insertInto('scheduler_pipelines').values({
      pipeline_id: pipelineId, name: pipeline.name, definition: JSON.stringify(pipeline), scheduler_id: schedulerId,
      submitted_by: 'tests', state: 'running', created, updated: created,
    }).execute();
    await db.insertInto('scheduler_stages').values({ pipeline_id: pipelineId, stage: 0, task_group_id: taskGroupIdOf(pipelineId, 0), state: 'submitting', created }).execute();
    const [x] = stageTasks(pipeline, pipelineId, 0, schedulerId, created);
    await q.queue().createTask(x!.taskId, x!.definition);

    const s = await scheduler({ reconcileIntervalMs: 200 });
    const done = await finished(client(s), pipelineId);
    assert.equal(done.state, 'completed');
    const defined = await outboxRows(db, { exchange: 'task-defined' });
    for (const name of ['x', 'y', 'z']) {
      assert.equal(defined.filter((r) => r.body.status.taskId === taskIdOf(pipelineId, 0, name)).length, 1, name);
    }
  });

  it('works without RabbitMQ, following the queue HTTP event stream', async () => {
    const s = await scheduler({ amqp: false });
    const pipelineId = slugid();
    await client(s).submit(pipelineId, {
      name: 'no-amqp',
      defaults: { taskQueueId: workerQueue, payload: { command: 'true', maxRunTime: 30 } },
      stages: [{ name: 'a', tasks: [{ name: 'one' }] }, { name: 'b', tasks: [{ name: 'two' }] }],
    });
    const done = await finished(client(s), pipelineId);
    assert.equal(done.state, 'completed');
  });
});
