// createArtifact: reference, link and error artifacts; idempotent repeats and conflicts; when a run
// accepts artifacts; expires rules; artifact-created in the outbox; listings and info.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { validate } from '../services/queue/src/http/validate.js';
import { claimedRun, rejectsWith, inOneHour } from './harness/artifacts.js';
import { resetClock, shiftClock } from './harness/clock.js';
import { outboxRows } from './harness/outbox.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';

describe('createArtifact', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });

  it('creates reference, link and error artifacts, each present at once with its artifact-created', async () => {
    const { taskId, runId, worker } = await claimedRun(q, { routes: ['index.x'] });
    const expires = inOneHour();
    assert.deepEqual(await worker.createArtifact(taskId, runId, 'public/ref', { storageType: 'reference', expires, url: 'https://example.com/a', contentType: 'text/html' }), { storageType: 'reference' });
    assert.deepEqual(await worker.createArtifact(taskId, runId, 'public/link', { storageType: 'link', expires, artifact: 'public/ref' }), { storageType: 'link' });
    assert.deepEqual(await worker.createArtifact(taskId, runId, 'public/err', { storageType: 'error', expires, reason: 'file-missing-on-worker', message: 'no such file' }), { storageType: 'error' });

    const rows = await outboxRows(q.service.ctx.db, { taskId, exchange: 'artifact-created' });
    assert.equal(rows.length, 3);
    for (const r of rows) {
      validate('v1/artifact-created-message.json', r.body);
      assert.equal(r.body.runId, runId);
      assert.equal(r.body.workerGroup, 'wg');
      assert.equal(r.body.workerId, 'w1');
      assert.equal(r.body.status.state, 'running');
      assert.deepEqual(r.cc, ['route.index.x']);
      assert.match(r.routing_key, new RegExp(`^primary\\.${taskId}\\.${runId}\\.wg\\.w1\\.`));
    }
    assert.deepEqual(rows.map((r) => r.body.artifact), [
      { storageType: 'reference', name: 'public/ref', expires: new Date(expires).toISOString(), contentType: 'text/html' },
      { storageType: 'link', name: 'public/link', expires: new Date(expires).toISOString(), contentType: 'application/binary' },
      { storageType: 'error', name: 'public/err', expires: new Date(expires).toISOString(), contentType: 'application/binary' },
    ]);

    const listed = await q.queue().listArtifacts(taskId, runId);
    assert.deepEqual(listed.artifacts.map((a: any) => [a.name, a.storageType]), [['public/err', 'error'], ['public/link', 'link'], ['public/ref', 'reference']]);
    assert.deepEqual(await q.queue().artifactInfo(taskId, runId, 'public/link'), {
      storageType: 'link', name: 'public/link', expires: new Date(expires).toISOString(), contentType: 'application/binary',
    });
    assert.deepEqual(await q.queue().latestArtifactInfo(taskId, 'public/ref'), (await q.queue().artifactInfo(taskId, runId, 'public/ref')));
  });

  it('is idempotent: the same create again succeeds and re-sends artifact-created', async () => {
    const { taskId, runId, worker } = await claimedRun(q);
    const body = { storageType: 'error', expires: inOneHour(), reason: 'file-missing-on-worker', message: 'gone' };
    await worker.createArtifact(taskId, runId, 'e', body);
    assert.deepEqual(await worker.createArtifact(taskId, runId, 'e', body), { storageType: 'error' });
    assert.equal((await outboxRows(q.service.ctx.db, { taskId, exchange: 'artifact-created' })).length, 2);
    // a later expires extends it
    const later = taskcluster.fromNowJSON('2 hours');
    await worker.createArtifact(taskId, runId, 'e', { ...body, expires: later });
    assert.equal((await q.queue().artifactInfo(taskId, runId, 'e')).expires, new Date(later).toISOString());
  });

  it('answers 409 for a different artifact under the same name', async () => {
    const { taskId, runId, worker } = await claimedRun(q);
    const expires = inOneHour();
    await worker.createArtifact(taskId, runId, 'e', { storageType: 'error', expires, reason: 'file-missing-on-worker', message: 'gone' });
    await worker.createArtifact(taskId, runId, 's', { storageType: 's3', expires, contentType: 'text/plain' });
    await worker.createArtifact(taskId, runId, 'l', { storageType: 'link', expires, artifact: 'e' });
    const conflicts: Array<[string, Record<string, unknown>, RegExp]> = [
      ['e', { storageType: 'error', expires, reason: 'file-missing-on-worker', message: 'other' }, /created with/],
      ['e', { storageType: 'reference', expires, url: 'https://example.com' }, /storageType error/],
      ['e', { storageType: 'error', expires: taskcluster.fromNowJSON('30 minutes'), reason: 'file-missing-on-worker', message: 'gone' }, /not shorten/],
      ['s', { storageType: 's3', expires, contentType: 'text/html' }, /contentType text\/plain/],
      ['l', { storageType: 'link', expires, artifact: 's' }, /created with/],
    ];
    for (const [name, body, message] of conflicts) {
      await assert.rejects(worker.createArtifact(taskId, runId, name, body), rejectsWith(409, 'RequestConflict', message));
    }
    // nothing changed
    assert.equal((await q.queue().artifactInfo(taskId, runId, 'e')).storageType, 'error');
    assert.equal((await q.queue().artifactInfo(taskId, runId, 's')).contentType, 'text/plain');
  });

  it('lets a reference change its URL or become a link', async () => {
    const { taskId, runId, worker } = await claimedRun(q);
    const expires = inOneHour();
    await worker.createArtifact(taskId, runId, 'public/r', { storageType: 'reference', expires, url: 'https://example.com/1' });
    await worker.createArtifact(taskId, runId, 'public/r', { storageType: 'reference', expires, url: 'https://example.com/2' });
    assert.equal((await q.queue().getArtifact(taskId, runId, 'public/r')).url, 'https://example.com/2');
    await worker.createArtifact(taskId, runId, 'public/t', { storageType: 'reference', expires, url: 'https://example.com/t' });
    await worker.createArtifact(taskId, runId, 'public/r', { storageType: 'link', expires, artifact: 'public/t' });
    assert.equal((await q.queue().artifactInfo(taskId, runId, 'public/r')).storageType, 'link');
    assert.equal((await q.queue().getArtifact(taskId, runId, 'public/r')).url, 'https://example.com/t');
  });

  it('accepts artifacts while running and for 25 minutes after an exception, not after completion', async () => {
    const expires = inOneHour();
    const ref = { storageType: 'reference', expires, url: 'https://example.com' };
    const done = await claimedRun(q);
    await done.worker.reportCompleted(done.taskId, done.runId);
    await assert.rejects(done.worker.createArtifact(done.taskId, done.runId, 'late', ref), rejectsWith(409, 'RequestConflict', /completed/));

    const crashed = await claimedRun(q, { retries: 0 });
    await crashed.worker.reportException(crashed.taskId, crashed.runId, { reason: 'malformed-payload' });
    await crashed.worker.createArtifact(crashed.taskId, crashed.runId, 'public/logs/live.log', ref);
    shiftClock(q, 26 * 60 * 1000);
    try {
      await assert.rejects(crashed.worker.createArtifact(crashed.taskId, crashed.runId, 'later', ref), rejectsWith(409, 'RequestConflict', /25 minutes/));
    } finally {
      resetClock(q);
    }
  });

  it('answers 400 for a missing task, run or claim, and refuses the object storage type', async () => {
    const expires = inOneHour();
    const ref = { storageType: 'reference', expires, url: 'https://example.com' };
    const queue = q.queue();
    await assert.rejects(queue.createArtifact(slugid(), 0, 'x', ref), rejectsWith(400, 'InputError', /not found/));
    const { taskId, runId } = await claimedRun(q);
    await assert.rejects(queue.createArtifact(taskId, runId + 1, 'x', ref), rejectsWith(400, 'InputError', /no run 1/));
    const pending = slugid();
    await queue.createTask(pending, taskDef({ taskQueueId: uniqueQueue() }));
    await assert.rejects(queue.createArtifact(pending, 0, 'x', ref), rejectsWith(400, 'InputError', /never claimed/));
    await assert.rejects(queue.createArtifact(taskId, runId, 'x', { storageType: 'object', expires }), rejectsWith(400, 'InputError', /object service/));
    await assert.rejects(queue.createArtifact(taskId, runId, 'x', { storageType: 'reference', expires }), rejectsWith(400, 'InputValidationError'));
    await assert.rejects(queue.finishArtifact(taskId, runId, 'nothing', { uploadId: slugid() }), rejectsWith(404, 'ResourceNotFound'));
    await queue.createArtifact(taskId, runId, 'x', ref);
    await assert.rejects(queue.finishArtifact(taskId, runId, 'x', { uploadId: slugid() }), rejectsWith(400, 'InputError', /object artifacts/));
    assert.equal((await outboxRows(q.service.ctx.db, { taskId: pending, exchange: 'artifact-created' })).length, 0);
  });

  it('answers 4xx, never 500, for input PostgreSQL could not store', async () => {
    const { taskId, runId, worker } = await claimedRun(q);
    const expires = inOneHour();
    await assert.rejects(
      worker.createArtifact(taskId, runId, 'x', { storageType: 'error', expires, reason: 'file-missing-on-worker', message: 'a\u0000b' }),
      rejectsWith(400, 'InputValidationError', /NUL/),
    );
    await assert.rejects(
      worker.createArtifact(taskId, runId, 'x', { storageType: 's3', expires, contentType: 'text/\ud800' }),
      rejectsWith(400, 'InputValidationError'),
    );
    await assert.rejects(
      worker.createArtifact(taskId, runId, 'x', { storageType: 'reference', expires: '2030-06-30T23:59:60Z', url: 'https://example.com' }),
      rejectsWith(400),
    );
    const nulToken = Buffer.from(JSON.stringify(['\u0000'])).toString('base64url');
    await assert.rejects(q.queue().listArtifacts(taskId, runId, { continuationToken: nulToken }), rejectsWith(400, 'InvalidRequestArguments'));
    await assert.rejects(q.queue().finishArtifact(taskId, '99999999999999999999', 'x', { uploadId: slugid() }), rejectsWith(404));
    await assert.rejects(q.queue().artifactInfo(taskId, '99999999999999999999', 'x'), rejectsWith(404));
    await assert.rejects(worker.createArtifact(taskId, '99999999999999999999', 'x', { storageType: 'reference', expires, url: 'https://example.com' }), rejectsWith(403));
    await assert.rejects(q.queue().createArtifact(taskId, '99999999999999999999', 'x', { storageType: 'reference', expires, url: 'https://example.com' }), rejectsWith(400, 'InputError'));
    assert.deepEqual((await q.queue().listArtifacts(taskId, runId)).artifacts, []);
  });

  it('keeps expires within the task and not in the past', async () => {
    const { taskId, runId, worker } = await claimedRun(q, { expires: taskcluster.fromNowJSON('2 days') });
    await assert.rejects(
      worker.createArtifact(taskId, runId, 'x', { storageType: 'reference', expires: taskcluster.fromNowJSON('3 days'), url: 'https://example.com' }),
      rejectsWith(400, 'InputError', /may not outlive their task/),
    );
    await assert.rejects(
      worker.createArtifact(taskId, runId, 'x', { storageType: 'reference', expires: taskcluster.fromNowJSON('-1 hour'), url: 'https://example.com' }),
      rejectsWith(400, 'InputError', /in the past/),
    );
    assert.deepEqual((await q.queue().listArtifacts(taskId, runId)).artifacts, []);
  });

  it('needs queue:create-artifact for the run', async () => {
    const { taskId, runId } = await claimedRun(q);
    const other = q.queue({ authorizedScopes: [`queue:create-artifact:${taskId}/${runId + 1}`] });
    await assert.rejects(
      other.createArtifact(taskId, runId, 'x', { storageType: 'reference', expires: inOneHour(), url: 'https://example.com' }),
      rejectsWith(403, 'InsufficientScopes'),
    );
  });

  it('pages listArtifacts and listLatestArtifacts by name', async () => {
    const { taskId, runId, worker } = await claimedRun(q);
    const expires = inOneHour();
    const names = Array.from({ length: 7 }, (_, i) => `public/a${i}`);
    for (const name of names) await worker.createArtifact(taskId, runId, name, { storageType: 'reference', expires, url: `https://example.com/${name}` });
    for (const list of [(o: any) => q.queue().listArtifacts(taskId, runId, o), (o: any) => q.queue().listLatestArtifacts(taskId, o)]) {
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const res = await list({ limit: 3, ...(token ? { continuationToken: token } : {}) });
        seen.push(...res.artifacts.map((a: any) => a.name));
        token = res.continuationToken;
        pages++;
      } while (token);
      assert.deepEqual(seen, names);
      assert.equal(pages, 3);
    }
    await assert.rejects(q.queue().listArtifacts(taskId, runId, { continuationToken: 'bm9wZQ' }), rejectsWith(400));
    await assert.rejects(q.queue().listArtifacts(taskId, runId + 1), rejectsWith(404));
    await assert.rejects(q.queue().listLatestArtifacts(slugid()), rejectsWith(404));
    const unscheduled = slugid();
    await q.queue().createTask(unscheduled, taskDef({ dependencies: [taskId] }));
    await assert.rejects(q.queue().listLatestArtifacts(unscheduled), rejectsWith(404, 'ResourceNotFound', /no runs/));
  });
});
