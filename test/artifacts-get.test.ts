// getArtifact and artifact-content: 303 redirects (which taskcluster-client resolves with the JSON
// body), 424 for error artifacts, link chains authorized name by name, cycles, 404/410, latest run.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { claimedRun, rejectsWith, httpRequest, inOneHour, json, type ClaimedRun } from './harness/artifacts.js';
import { resetClock, shiftClock } from './harness/clock.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid } from './harness/tasks.js';

describe('getArtifact', () => {
  let q: TestQueue;
  let run: ClaimedRun;
  const url = 'https://example.com/artifact.txt';
  before(async () => {
    q = await startTestQueue({ enableLoops: false });
    run = await claimedRun(q);
    const { taskId, runId, worker } = run;
    const expires = inOneHour();
    const create = (name: string, body: object) => worker.createArtifact(taskId, runId, name, { expires, ...body });
    await create('public/ref', { storageType: 'reference', url });
    await create('private/ref', { storageType: 'reference', url });
    await create('public/err', { storageType: 'error', reason: 'file-not-readable-on-worker', message: 'permission denied' });
    // public/l1 → public/l2 → private/ref
    await create('public/l2', { storageType: 'link', artifact: 'private/ref' });
    await create('public/l1', { storageType: 'link', artifact: 'public/l2' });
    // private/l1 → private/l2 → private/ref (no anonymous scope covers these)
    await create('private/l2', { storageType: 'link', artifact: 'private/ref' });
    await create('private/l1', { storageType: 'link', artifact: 'private/l2' });
    await create('public/to-err', { storageType: 'link', artifact: 'public/err' });
    await create('public/dangling', { storageType: 'link', artifact: 'public/nothing' });
    // cycles: a self link and a two-step loop
    await create('public/self', { storageType: 'link', artifact: 'public/self' });
    await create('public/c1', { storageType: 'link', artifact: 'public/c2' });
    await create('public/c2', { storageType: 'link', artifact: 'public/c1' });
  });
  after(async () => {
    await q?.stop();
  });

  it('redirects a reference with 303, Location and a {storageType, url} body', async () => {
    const { taskId, runId } = run;
    assert.deepEqual(await q.queue().getArtifact(taskId, runId, 'public/ref'), { storageType: 'reference', url });
    assert.deepEqual(await q.queue().getLatestArtifact(taskId, 'public/ref'), { storageType: 'reference', url });
    const raw = await httpRequest(`${q.rootUrl}/api/queue/v1/task/${taskId}/runs/${runId}/artifacts/public%2Fref`);
    assert.equal(raw.status, 303);
    assert.equal(raw.headers.location, url);
    assert.equal(raw.headers['x-taskcluster-artifact-storage-type'], 'reference');
    assert.deepEqual(json(raw), { storageType: 'reference', url });
    // the name may also arrive with plain slashes
    const plain = await httpRequest(`${q.rootUrl}/api/queue/v1/task/${taskId}/artifacts/public/ref`);
    assert.equal(plain.status, 303);
  });

  it('takes printable ASCII names, as the client encodes them', async () => {
    const { taskId, runId, worker } = run;
    // not `'`: taskcluster-client signs the path as url.parse escapes it (%27) but sends it raw,
    // so a Hawk-signed request for such a name fails against Taskcluster as well
    const name = 'public/odd name %2F?#&+=;~!*()[]{}|\\^`"<>,:@$.txt';
    await worker.createArtifact(taskId, runId, name, { storageType: 'reference', expires: inOneHour(), url });
    assert.deepEqual(await q.queue().getArtifact(taskId, runId, name), { storageType: 'reference', url });
    assert.equal((await q.queue().artifactInfo(taskId, runId, name)).name, name);
    assert.ok((await q.queue().listArtifacts(taskId, runId)).artifacts.some((a: any) => a.name === name));
  });

  it('answers 424 with {reason, message} for an error artifact', async () => {
    const { taskId, runId } = run;
    await assert.rejects(q.queue().getArtifact(taskId, runId, 'public/err'), (err: any) => {
      assert.equal(err.statusCode, 424);
      assert.equal(err.message, 'permission denied');
      assert.deepEqual(err.body, { reason: 'file-not-readable-on-worker', message: 'permission denied' });
      return true;
    });
    const raw = await httpRequest(`${q.rootUrl}/api/queue/v1/task/${taskId}/artifacts/public%2Fto-err`);
    assert.equal(raw.status, 424);
    assert.equal(raw.headers['x-taskcluster-artifact-storage-type'], 'error');
    assert.deepEqual(await q.queue().artifact(taskId, runId, 'public/err'), {
      storageType: 'error', reason: 'file-not-readable-on-worker', message: 'permission denied',
    });
  });

  it('follows link chains, authorizing every name on the way', async () => {
    const { taskId, runId } = run;
    assert.deepEqual(await q.queue().getArtifact(taskId, runId, 'public/l1'), { storageType: 'reference', url });
    assert.deepEqual(await q.queue().latestArtifact(taskId, 'public/l1'), { storageType: 'reference', url });
    // the anonymous scopes cover public/* only: the chain ends at a private name
    const anonymous = new taskcluster.Queue({ rootUrl: q.rootUrl, retries: 0 });
    await assert.rejects(anonymous.getArtifact(taskId, runId, 'public/l1'), rejectsWith(403, 'InsufficientScopes', /private\/ref/));
    await assert.rejects(anonymous.artifact(taskId, runId, 'public/l1'), rejectsWith(403, 'InsufficientScopes'));
    // each link's own name is needed too
    const targetOnly = q.queue({ authorizedScopes: ['queue:get-artifact:private/ref', 'queue:get-artifact:private/l2'] });
    assert.deepEqual(await targetOnly.getArtifact(taskId, runId, 'private/l2'), { storageType: 'reference', url });
    await assert.rejects(targetOnly.getArtifact(taskId, runId, 'private/l1'), rejectsWith(403, 'InsufficientScopes', /private\/l1/));
    const linkOnly = q.queue({ authorizedScopes: ['queue:get-artifact:private/l1', 'queue:get-artifact:private/l2'] });
    await assert.rejects(linkOnly.getArtifact(taskId, runId, 'private/l1'), rejectsWith(403, 'InsufficientScopes', /private\/ref/));
    const all = q.queue({ authorizedScopes: ['queue:get-artifact:private/ref', 'queue:get-artifact:private/l2', 'queue:get-artifact:private/l1'] });
    assert.deepEqual(await all.getArtifact(taskId, runId, 'private/l1'), { storageType: 'reference', url });
    // artifactInfo does not follow links
    assert.equal((await q.queue().artifactInfo(taskId, runId, 'public/l1')).storageType, 'link');
  });

  it('answers 400 for link cycles and 404 for a dangling link', async () => {
    const { taskId, runId } = run;
    await assert.rejects(q.queue().getArtifact(taskId, runId, 'public/self'), rejectsWith(400, 'InputError', /cycle/));
    await assert.rejects(q.queue().getArtifact(taskId, runId, 'public/c1'), rejectsWith(400, 'InputError', /public\/c1 → public\/c2 → public\/c1/));
    await assert.rejects(q.queue().artifact(taskId, runId, 'public/c2'), rejectsWith(400, 'InputError'));
    await assert.rejects(q.queue().getArtifact(taskId, runId, 'public/dangling'), rejectsWith(404, 'ResourceNotFound', /public\/nothing/));
  });

  it('keeps private names private and answers 403 before saying whether anything exists', async () => {
    const { taskId, runId } = run;
    const anonymous = new taskcluster.Queue({ rootUrl: q.rootUrl, retries: 0 });
    assert.deepEqual(await anonymous.getArtifact(taskId, runId, 'public/ref'), { storageType: 'reference', url });
    await assert.rejects(anonymous.getArtifact(taskId, runId, 'private/ref'), rejectsWith(403, 'InsufficientScopes'));
    await assert.rejects(anonymous.getArtifact(slugid(), 0, 'private/x'), rejectsWith(403, 'InsufficientScopes'));
    await assert.rejects(anonymous.listArtifacts(taskId, runId), rejectsWith(403, 'InsufficientScopes'));
  });

  it('answers 404 for unknown tasks, runs and names', async () => {
    const { taskId, runId } = run;
    await assert.rejects(q.queue().getArtifact(slugid(), 0, 'public/ref'), rejectsWith(404, 'ResourceNotFound', /Task/));
    await assert.rejects(q.queue().getArtifact(taskId, runId + 1, 'public/ref'), rejectsWith(404, 'ResourceNotFound', /no run/));
    await assert.rejects(q.queue().getArtifact(taskId, runId, 'public/none'), rejectsWith(404, 'ResourceNotFound'));
    await assert.rejects(q.queue().artifactInfo(taskId, runId, 'public/none'), rejectsWith(404, 'ResourceNotFound'));
    await assert.rejects(q.queue().getLatestArtifact(slugid(), 'public/ref'), rejectsWith(404));
  });

  it('answers 410 once an artifact expired, before the loop deletes it', async () => {
    const { taskId, runId } = run;
    shiftClock(q, 2 * 3600 * 1000);
    try {
      await assert.rejects(q.queue().getArtifact(taskId, runId, 'public/ref'), rejectsWith(410, 'ResourceExpired'));
    } finally {
      resetClock(q);
    }
  });

  it('reads the latest run for the latest variants', async () => {
    const first = await claimedRun(q, { retries: 1 });
    const expires = inOneHour();
    await first.worker.createArtifact(first.taskId, 0, 'public/only-run-0', { storageType: 'reference', expires, url });
    // worker-shutdown retries: run 1 becomes the latest
    await first.worker.reportException(first.taskId, 0, { reason: 'worker-shutdown' });
    await assert.rejects(q.queue().getLatestArtifact(first.taskId, 'public/only-run-0'), rejectsWith(404));
    assert.deepEqual(await q.queue().getArtifact(first.taskId, 0, 'public/only-run-0'), { storageType: 'reference', url });
    assert.deepEqual((await q.queue().listLatestArtifacts(first.taskId)).artifacts, []);
  });
});
