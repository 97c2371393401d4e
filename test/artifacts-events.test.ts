// artifact-created on RabbitMQ, bound the way a pulse listener binds it (taskcluster-client's
// QueueEvents.artifactCreated pattern): one per artifact that becomes present, an s3 artifact only
// once its upload completed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { claimedRun, httpRequest, inOneHour } from './harness/artifacts.js';
import { deleteExchanges, listen, onPrefix as onTestPrefix, type Listener } from './harness/amqp.js';
import { amqpUrl, startTestQueue, type TestQueue } from './harness/service.js';

describe('artifact-created on RabbitMQ', () => {
  let q: TestQueue;
  let listener: Listener | undefined;
  before(async () => {
    q = await startTestQueue({ amqpUrl });
  });
  after(async () => {
    await listener?.close();
    await q?.stop();
    if (q) await deleteExchanges(q.config.exchangePrefix);
  });

  it('arrives for a reference at once and for an s3 artifact when its bytes are in', async () => {
    const run = await claimedRun(q, { routes: ['index.project.x'] });
    const binding = new taskcluster.QueueEvents({ rootUrl: 'http://unused' }).artifactCreated({ taskId: run.taskId });
    listener = await listen([
      onTestPrefix(q.config.exchangePrefix, binding),
    ]);
    const expires = inOneHour();
    await run.worker.createArtifact(run.taskId, run.runId, 'public/ref', { storageType: 'reference', expires, url: 'https://example.com' });
    const { putUrl } = await run.worker.createArtifact(run.taskId, run.runId, 'public/out.txt', { storageType: 's3', expires, contentType: 'text/plain' });
    const [first] = await listener.waitFor(() => true);
    assert.equal(first!.body.artifact.name, 'public/ref');

    assert.equal((await httpRequest(putUrl, { method: 'PUT', body: 'done' })).status, 200);
    const both = await listener.waitFor(() => true, 2);
    const blob = both[1]!;
    assert.deepEqual(blob.body.artifact, { storageType: 's3', name: 'public/out.txt', expires: new Date(expires).toISOString(), contentType: 'text/plain' });
    assert.equal(blob.exchange, `${q.config.exchangePrefix}artifact-created`);
    assert.match(blob.routingKey, new RegExp(`^primary\\.${run.taskId}\\.${run.runId}\\.wg\\.w1\\.`));
    assert.deepEqual(blob.properties.headers?.CC, ['route.index.project.x']);
    assert.equal(listener.messages.length, 2);
  });
});
