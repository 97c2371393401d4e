// The artifact loop: artifacts past `expires` go, bytes first and in bounded batches; so do the
// bytes of unfinished and replaced uploads. The clock is moved, never waited for.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import taskcluster from 'taskcluster-client';
import { expireArtifacts } from '../services/queue/src/artifacts/expire.js';
import { claimedRun, httpRequest, inOneHour, pattern } from './harness/artifacts.js';
import { resetClock, shiftClock } from './harness/clock.js';
import { startTestQueue, type TestQueue } from './harness/service.js';

async function counts(q: TestQueue, taskId: string) {
  const { rows } = await sql<{ artifacts: number; uploads: number; chunks: number }>`
    SELECT (SELECT count(*)::int FROM artifacts WHERE task_id = ${taskId}) AS artifacts,
           (SELECT count(*)::int FROM artifact_uploads WHERE task_id = ${taskId}) AS uploads,
           (SELECT count(*)::int FROM artifact_chunks c JOIN artifact_uploads u USING (upload_id) WHERE u.task_id = ${taskId}) AS chunks
  `.execute(q.service.ctx.db);
  return rows[0]!;
}

async function drain(q: TestQueue) {
  const passes = [];
  for (;;) {
    const r = await expireArtifacts(q.service.ctx);
    passes.push(r);
    if (!r.full) return passes;
  }
}

describe('artifact expiry', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ artifactChunkBytes: 64 * 1024, enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });

  it('deletes expired artifacts with their bytes, in batches, and leaves the others', async () => {
    const run = await claimedRun(q);
    const soon = inOneHour();
    const later = taskcluster.fromNowJSON('3 hours');
    const s3 = await run.worker.createArtifact(run.taskId, run.runId, 'public/big.bin', { storageType: 's3', expires: soon, contentType: 'x/y' });
    const size = 70 * 64 * 1024; // 70 chunks: more than one batch
    assert.equal((await httpRequest(s3.putUrl, { method: 'PUT', body: pattern(size) })).status, 200);
    await run.worker.createArtifact(run.taskId, run.runId, 'public/ref', { storageType: 'reference', expires: soon, url: 'https://example.com' });
    const kept = await run.worker.createArtifact(run.taskId, run.runId, 'public/kept.bin', { storageType: 's3', expires: later, contentType: 'x/y' });
    assert.equal((await httpRequest(kept.putUrl, { method: 'PUT', body: 'still here' })).status, 200);
    assert.deepEqual(await counts(q, run.taskId), { artifacts: 3, uploads: 2, chunks: 71 });

    // nothing is due yet
    assert.equal((await expireArtifacts(q.service.ctx)).handled, 0);

    shiftClock(q, 2 * 3600 * 1000);
    try {
      const first = await expireArtifacts(q.service.ctx);
      assert.equal(first.chunks, 64);
      assert.equal(first.full, true);
      const rest = await drain(q);
      assert.equal(rest.reduce((n, r) => n + r.chunks, 0), 6);
      assert.deepEqual(await counts(q, run.taskId), { artifacts: 1, uploads: 1, chunks: 1 });
    } finally {
      resetClock(q);
    }
    assert.deepEqual((await q.queue().listArtifacts(run.taskId, run.runId)).artifacts.map((a: any) => a.name), ['public/kept.bin']);
    const { url } = await q.queue().getArtifact(run.taskId, run.runId, 'public/kept.bin');
    assert.equal((await httpRequest(url)).body.toString(), 'still here');
  });

  it('deletes the bytes of replaced uploads and of uploads that never finished', async () => {
    const run = await claimedRun(q);
    const body = { storageType: 's3', expires: inOneHour(), contentType: 'text/plain' };
    const first = await run.worker.createArtifact(run.taskId, run.runId, 'log', body);
    assert.equal((await httpRequest(first.putUrl, { method: 'PUT', body: 'one' })).status, 200);
    const second = await run.worker.createArtifact(run.taskId, run.runId, 'log', body);
    assert.equal((await httpRequest(second.putUrl, { method: 'PUT', body: 'two' })).status, 200);
    // an upload whose process died half-way: rows without a completion, past their time
    const dead = randomUUID();
    await sql`INSERT INTO artifact_uploads (upload_id, task_id, run_id, name, chunk_bytes, expires)
              VALUES (${dead}, ${run.taskId}, ${run.runId}, 'log', 65536, now() - interval '1 minute')`.execute(q.service.ctx.db);
    await sql`INSERT INTO artifact_chunks (upload_id, seq, data) VALUES (${dead}, 0, ${Buffer.from('half')})`.execute(q.service.ctx.db);
    assert.deepEqual(await counts(q, run.taskId), { artifacts: 1, uploads: 3, chunks: 3 });

    await drain(q);
    assert.deepEqual(await counts(q, run.taskId), { artifacts: 1, uploads: 1, chunks: 1 });
    const { url } = await q.queue().getArtifact(run.taskId, run.runId, 'log');
    assert.equal((await httpRequest(url)).body.toString(), 'two');
  });

  it('takes the bytes along when an artifact row is deleted by anyone else', async () => {
    const run = await claimedRun(q);
    const s3 = await run.worker.createArtifact(run.taskId, run.runId, 'x', { storageType: 's3', expires: inOneHour(), contentType: 'x/y' });
    assert.equal((await httpRequest(s3.putUrl, { method: 'PUT', body: pattern(100_000) })).status, 200);
    await sql`DELETE FROM artifacts WHERE task_id = ${run.taskId}`.execute(q.service.ctx.db);
    assert.deepEqual(await counts(q, run.taskId), { artifacts: 0, uploads: 0, chunks: 0 });
  });

  it('runs as a background loop', async () => {
    const looping = await startTestQueue({ enableLoops: true, expirationIntervalMs: 100 });
    try {
      const run = await claimedRun(looping);
      await run.worker.createArtifact(run.taskId, run.runId, 'public/ref', { storageType: 'reference', expires: inOneHour(), url: 'https://example.com' });
      shiftClock(looping, 2 * 3600 * 1000);
      const deadline = Date.now() + 10_000;
      while ((await counts(looping, run.taskId)).artifacts > 0) {
        assert.ok(Date.now() < deadline, 'the loop did not delete the expired artifact within 10 s');
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      await looping.stop();
    }
  });
});
