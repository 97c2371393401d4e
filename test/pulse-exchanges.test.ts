// Every exchange, end to end on real RabbitMQ: the relay publishes what the API committed, and a
// queue bound with taskcluster-client's own QueueEvents patterns receives it with the exact routing
// key, a body valid against the message schema, and the message properties Taskcluster sends.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import taskcluster from 'taskcluster-client';
import { exchangeByName } from '@conveyor/pulse';
import { schemas, schemaId } from '@conveyor/schemas';
import { endpoints } from '../services/queue/src/http/routes.js';
import { amqpUrl, startTestQueue, type TestQueue } from './harness/service.js';
import { deleteExchanges, listen, onPrefix as onTestPrefix, type BindingLike, type Listener, type Received } from './harness/amqp.js';
import { outboxRows } from './harness/outbox.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => void;
const ajv = new Ajv({ strict: false });
addFormats(ajv);
for (const s of Object.values(schemas)) ajv.addSchema(s as object);

function assertValidBody(m: Received): void {
  const name = m.exchange.slice(m.exchange.lastIndexOf('/') + 1);
  const validate = ajv.getSchema(schemaId(exchangeByName(name)!.schema))!;
  assert.ok(validate(m.body), `${name} body invalid: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(m.body)}`);
}

const hasEndpoint = (name: string) => endpoints.some((e) => e.name === name);

describe('pulse exchanges', () => {
  let q: TestQueue;
  let prefix: string;
  // taskcluster-client 87 refuses an exchangePrefix option ("exchangePrefix has been deprecated!"):
  // its patterns are used as they are, on our prefix.
  const events = new taskcluster.QueueEvents({ rootUrl: 'http://unused' });
  const onPrefix = (b: BindingLike) => onTestPrefix(prefix, b);
  const listeners: Listener[] = [];
  const bound = async (...bindings: BindingLike[]) => {
    const l = await listen(bindings);
    listeners.push(l);
    return l;
  };

  before(async () => {
    q = await startTestQueue({ amqpUrl });
    prefix = q.config.exchangePrefix;
  });
  after(async () => {
    for (const l of listeners) await l.close();
    await q?.stop();
    if (prefix) await deleteExchanges(prefix);
  });

  it('the exchange reference gives taskcluster-client the same patterns on our prefix', async () => {
    const reference = await (await fetch(`${q.rootUrl}/references/queue/v1/exchanges.json`)).json();
    const Ours = taskcluster.createClient(reference);
    const ours = new Ours({ rootUrl: q.rootUrl });
    const taskId = slugid();
    assert.deepEqual(
      { exchange: ours.taskCompleted({ taskId }).exchange, routingKeyPattern: ours.taskCompleted({ taskId }).routingKeyPattern },
      onPrefix(events.taskCompleted({ taskId })),
    );
    assert.throws(() => new taskcluster.QueueEvents({ rootUrl: q.rootUrl, exchangePrefix: prefix }), /deprecated/);
  });

  it('task-defined, -pending, -running, -completed and task-group-resolved arrive with exact keys, bodies and properties', async () => {
    const queue = q.queue();
    const taskId = slugid();
    const taskQueueId = uniqueQueue();
    const [prov, wt] = taskQueueId.split('/');
    const routes = ['index.conveyor.a', 'notify.b'];
    const l = await bound(
      onPrefix(events.taskDefined({ taskId })),
      onPrefix(events.taskPending({ taskId })),
      onPrefix(events.taskRunning({ taskId })),
      onPrefix(events.taskCompleted({ taskId })),
      onPrefix(events.taskGroupResolved({ taskGroupId: taskId })),
    );
    await queue.createTask(taskId, taskDef({ taskQueueId, routes, tags: { purpose: 'pulse' } }));
    const claim = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w1', tasks: 1 });
    assert.equal(claim.tasks.length, 1);
    await q.queue({ credentials: claim.tasks[0].credentials }).reportCompleted(taskId, 0);

    const key = (run: string, worker: string) => `primary.${taskId}.${run}.${worker}.${prov}.${wt}.-.${taskId}._`;
    const expected: Array<[string, string, string]> = [
      ['task-defined', key('_', '_._'), 'unscheduled'],
      ['task-pending', key('0', '_._'), 'pending'],
      ['task-running', key('0', 'wg.w1'), 'running'],
      ['task-completed', key('0', 'wg.w1'), 'completed'],
    ];
    const got = await l.waitFor(() => true, 5);
    assert.deepEqual(
      got.map((m) => [m.exchange, m.routingKey]),
      [...expected.map(([x, k]) => [prefix + x, k]), [prefix + 'task-group-resolved', `primary.${taskId}.-._`]],
    );
    const rows = await outboxRows(q.service.ctx.db, {});
    for (const [i, [, , state]] of expected.entries()) {
      const m = got[i]!;
      assertValidBody(m);
      assert.equal(m.body.status.taskId, taskId);
      assert.equal(m.body.status.state, state);
      assert.deepEqual(m.body.task, { tags: { purpose: 'pulse' } });
      assert.deepEqual(m.properties.headers?.CC, routes.map((r) => `route.${r}`));
    }
    assert.equal(got[1]!.body.runId, 0);
    assert.equal(got[2]!.body.workerGroup, 'wg');
    assert.equal(got[2]!.body.workerId, 'w1');
    assert.equal(new Date(got[2]!.body.takenUntil).getTime(), new Date(claim.tasks[0].takenUntil).getTime());
    assert.equal(got[3]!.body.status.runs[0].reasonResolved, 'completed');
    const group = got[4]!;
    assertValidBody(group);
    assert.equal(group.body.taskGroupId, taskId);
    assert.equal(group.body.schedulerId, '-');
    for (const m of got) {
      assert.equal(m.properties.contentType, 'application/json');
      assert.equal(m.properties.contentEncoding, 'utf-8');
      assert.equal(m.properties.deliveryMode, 2);
      // the messageId is the outbox id of exactly this message
      const row = rows.find((r) => r.id === m.properties.messageId);
      assert.ok(row, `no outbox row ${m.properties.messageId}`);
      assert.equal(row.routing_key, m.routingKey);
      assert.equal(row.exchange, m.exchange);
    }
  });

  it('task-failed and task-exception arrive on the client patterns', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const [prov, wt] = taskQueueId.split('/');
    const failedId = slugid();
    const exceptionId = slugid();
    const l = await bound(onPrefix(events.taskFailed({ taskId: failedId })), onPrefix(events.taskException({ taskId: exceptionId })));
    await queue.createTask(failedId, taskDef({ taskQueueId }));
    await queue.createTask(exceptionId, taskDef({ taskQueueId, retries: 0 }));
    const claim = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w2', tasks: 2 });
    const cred = (id: string) => claim.tasks.find((t: any) => t.status.taskId === id).credentials;
    await q.queue({ credentials: cred(failedId) }).reportFailed(failedId, 0);
    await q.queue({ credentials: cred(exceptionId) }).reportException(exceptionId, 0, { reason: 'malformed-payload' });

    const [failed] = await l.waitFor((m) => m.exchange === prefix + 'task-failed');
    assert.equal(failed!.routingKey, `primary.${failedId}.0.wg.w2.${prov}.${wt}.-.${failedId}._`);
    assertValidBody(failed!);
    assert.equal(failed!.body.status.state, 'failed');
    assert.equal(failed!.body.runId, 0);
    const [exception] = await l.waitFor((m) => m.exchange === prefix + 'task-exception');
    assert.equal(exception!.routingKey, `primary.${exceptionId}.0.wg.w2.${prov}.${wt}.-.${exceptionId}._`);
    assertValidBody(exception!);
    assert.equal(exception!.body.status.runs[0].reasonResolved, 'malformed-payload');
  });

  it('a queue bound to the primary key and to route.# receives each message once, with CC routes under route.<r>', async () => {
    const queue = q.queue();
    const taskQueueId = uniqueQueue();
    const [a, b] = [slugid(), slugid()];
    const both = await bound(onPrefix(events.taskDefined({ taskId: a })), onPrefix(events.taskDefined('route.#')));
    const routeOnly = await bound(onPrefix(events.taskDefined('route.index.once.a')));
    await queue.createTask(a, taskDef({ taskQueueId, routes: ['index.once.a', 'index.once.b'] }));
    // b follows a on the same relay channel: once b is in, a duplicate of a would be too
    await queue.createTask(b, taskDef({ taskQueueId, routes: ['index.once.c'] }));
    await both.waitFor((m) => m.body.status.taskId === b);
    assert.equal(both.messages.filter((m) => m.body.status.taskId === a).length, 1);

    const [viaRoute] = await routeOnly.waitFor((m) => m.body.status.taskId === a);
    // delivered under its primary key; the route that matched is in the CC header
    assert.match(viaRoute!.routingKey, new RegExp(`^primary\\.${a}\\.`));
    assert.deepEqual(viaRoute!.properties.headers?.CC, ['route.index.once.a', 'route.index.once.b']);
    assert.equal(routeOnly.messages.some((m) => m.body.status.taskId === b), false);
  });

  it('artifact-created arrives on the client pattern', { skip: !hasEndpoint('createArtifact') && 'createArtifact is not built yet' }, async () => {
    const queue = q.queue();
    const taskId = slugid();
    const taskQueueId = uniqueQueue();
    const [prov, wt] = taskQueueId.split('/');
    const l = await bound(onPrefix(events.artifactCreated({ taskId })));
    await queue.createTask(taskId, taskDef({ taskQueueId }));
    const claim = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: 'w3', tasks: 1 });
    const worker = q.queue({ credentials: claim.tasks[0].credentials });
    const expires = taskcluster.fromNowJSON('1 day');
    await worker.createArtifact(taskId, 0, 'public/link.txt', { storageType: 'reference', expires, contentType: 'text/plain', url: 'https://example.com/x' });
    const [m] = await l.waitFor(() => true);
    assert.equal(m!.routingKey, `primary.${taskId}.0.wg.w3.${prov}.${wt}.-.${taskId}._`);
    assertValidBody(m!);
    assert.equal(m!.body.artifact.name, 'public/link.txt');
    assert.equal(m!.body.artifact.storageType, 'reference');
    assert.equal(m!.body.workerId, 'w3');
  });

  it('task-group-sealed arrives on the client pattern', { skip: !hasEndpoint('sealTaskGroup') && 'sealTaskGroup is not built yet' }, async () => {
    const queue = q.queue();
    const taskGroupId = slugid();
    const l = await bound(onPrefix(events.taskGroupSealed({ taskGroupId })));
    await queue.createTask(slugid(), taskDef({ taskGroupId, taskQueueId: uniqueQueue() }));
    await queue.sealTaskGroup(taskGroupId);
    const [m] = await l.waitFor(() => true);
    assert.equal(m!.routingKey, `primary.${taskGroupId}.-._`);
    assertValidBody(m!);
    assert.equal(m!.body.taskGroupId, taskGroupId);
    assert.ok(m!.body.sealed);
  });
});
