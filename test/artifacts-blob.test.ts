// s3 artifacts stored by Conveyor: createArtifact → PUT putUrl → getArtifact (303) → GET the
// signed download URL; Range; bewit-signed getArtifact URLs; size limits; bad and expired URLs.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { validate } from '../services/queue/src/http/validate.js';
import { claimedRun, httpRequest, inOneHour, json, pattern, sha256Of } from './harness/artifacts.js';
import { resetClock, shiftClock } from './harness/clock.js';
import { outboxRows } from './harness/outbox.js';
import { startTestQueue, type TestQueue } from './harness/service.js';

describe('s3 artifacts stored by Conveyor', () => {
  let q: TestQueue;
  before(async () => {
    // small chunks so a few hundred KiB span several rows
    q = await startTestQueue({ artifactChunkBytes: 64 * 1024, maxArtifactBytes: 2 * 1024 * 1024, enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });

  async function uploaded(size: number, name = 'public/build/out.bin', contentType = 'application/octet-stream') {
    const run = await claimedRun(q);
    const created = await run.worker.createArtifact(run.taskId, run.runId, name, { storageType: 's3', expires: inOneHour(), contentType });
    const put = await httpRequest(created.putUrl, { method: 'PUT', headers: { 'content-type': contentType, 'content-length': size }, body: [...pattern(size)] });
    return { ...run, name, created, put };
  }

  it('uploads through putUrl and downloads the same bytes through the 303', async () => {
    const size = 200 * 1024 + 17;
    const { taskId, runId, name, created, put } = await uploaded(size);
    assert.equal(created.storageType, 's3');
    assert.equal(created.contentType, 'application/octet-stream');
    assert.match(created.putUrl, new RegExp(`^${q.rootUrl}/api/queue/v1/artifact-uploads/`));
    assert.ok(Date.parse(created.expires) > Date.now() + 40 * 60 * 1000);
    assert.equal(put.status, 200, put.body.toString());
    assert.equal(put.headers.etag, `"${sha256Of(pattern(size))}"`);

    const redirect = await q.queue().getArtifact(taskId, runId, name);
    assert.equal(redirect.storageType, 's3');
    assert.match(redirect.url, new RegExp(`^${q.rootUrl}/api/queue/v1/artifact-downloads/`));
    const got = await httpRequest(redirect.url);
    assert.equal(got.status, 200);
    assert.equal(got.headers['content-type'], 'application/octet-stream');
    assert.equal(got.headers['content-length'], String(size));
    assert.equal(got.headers['accept-ranges'], 'bytes');
    assert.equal(sha256Of([got.body]), sha256Of(pattern(size)));

    const latest = await q.queue().getLatestArtifact(taskId, name);
    assert.equal(latest.storageType, 's3');
    const content = await q.queue().artifact(taskId, runId, name);
    assert.equal(content.storageType, 's3');
    assert.equal((await httpRequest(content.url)).length, size);
    const info = await q.queue().artifactInfo(taskId, runId, name);
    assert.deepEqual(info, { storageType: 's3', name, expires: info.expires, contentType: 'application/octet-stream', contentLength: size });

    // artifact-created is written by the upload's transaction, not by createArtifact
    const rows = await outboxRows(q.service.ctx.db, { taskId, exchange: 'artifact-created' });
    assert.equal(rows.length, 1);
    validate('v1/artifact-created-message.json', rows[0]!.body);
    assert.deepEqual(rows[0]!.body.artifact, { storageType: 's3', name, expires: info.expires, contentType: 'application/octet-stream' });
    assert.equal(rows[0]!.body.workerGroup, 'wg');
    assert.equal(rows[0]!.body.workerId, 'w1');
  });

  it('stores the bytes in chunk rows and serves the content type and encoding it was given', async () => {
    const size = 64 * 1024 * 3 + 5;
    const { taskId, runId, name, put } = await uploaded(size, 'logs/live.log', 'text/plain; charset=utf-8');
    assert.equal(put.status, 200);
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM artifact_chunks c JOIN artifact_uploads u USING (upload_id)
      WHERE u.task_id = ${taskId} AND u.name = ${name}`.execute(q.service.ctx.db);
    assert.equal(rows[0]!.n, 4);
    const got = await httpRequest((await q.queue().getArtifact(taskId, runId, name)).url);
    assert.equal(got.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(got.length, size);
  });

  it('is not present, and sends no artifact-created, until the upload completes', async () => {
    const run = await claimedRun(q);
    const name = 'public/pending.bin';
    await run.worker.createArtifact(run.taskId, run.runId, name, { storageType: 's3', expires: inOneHour(), contentType: 'x/y' });
    await assert.rejects(q.queue().getArtifact(run.taskId, run.runId, name), (err: any) => {
      assert.equal(err.statusCode, 404);
      assert.match(err.message, /upload has not completed/);
      return true;
    });
    const listed = await q.queue().listArtifacts(run.taskId, run.runId);
    assert.deepEqual(listed.artifacts.map((a: any) => a.name), [name]);
    assert.equal((await outboxRows(q.service.ctx.db, { taskId: run.taskId, exchange: 'artifact-created' })).length, 0);
  });

  it('serves byte ranges: 206 with Content-Range, suffix and open ranges, 416 past the end', async () => {
    const size = 64 * 1024 * 2 + 100;
    const { taskId, runId, name } = await uploaded(size);
    const whole = Buffer.concat([...pattern(size)]);
    const { url } = await q.queue().getArtifact(taskId, runId, name);

    const mid = await httpRequest(url, { headers: { range: 'bytes=65530-65545' } });
    assert.equal(mid.status, 206);
    assert.equal(mid.headers['content-range'], `bytes 65530-65545/${size}`);
    assert.equal(mid.headers['content-length'], '16');
    assert.deepEqual(mid.body, whole.subarray(65530, 65546));

    const tail = await httpRequest(url, { headers: { range: 'bytes=-10' } });
    assert.equal(tail.status, 206);
    assert.deepEqual(tail.body, whole.subarray(size - 10));

    const open = await httpRequest(url, { headers: { range: `bytes=${size - 3}-` } });
    assert.equal(open.status, 206);
    assert.equal(open.headers['content-range'], `bytes ${size - 3}-${size - 1}/${size}`);
    assert.deepEqual(open.body, whole.subarray(size - 3));

    const clamped = await httpRequest(url, { headers: { range: `bytes=0-${size * 2}` } });
    assert.equal(clamped.status, 206);
    assert.equal(clamped.length, size);

    const beyond = await httpRequest(url, { headers: { range: `bytes=${size}-` } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers['content-range'], `bytes */${size}`);

    // a stale If-Range gets the whole content
    const stale = await httpRequest(url, { headers: { range: 'bytes=0-9', 'if-range': '"other"' } });
    assert.equal(stale.status, 200);
    assert.equal(stale.length, size);

    const head = await httpRequest(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(size));
    assert.equal(head.length, 0);
  });

  it('downloads through a bewit-signed getArtifact URL, for private names too', async () => {
    const size = 1000;
    const { taskId, runId } = await uploaded(size, 'private/secret.bin');
    const queue = q.queue();
    const signed = queue.buildSignedUrl(queue.getArtifact, taskId, runId, 'private/secret.bin', { expiration: 600 });
    // without the signature, an anonymous caller may not read it
    const anonymous = await httpRequest(signed.replace(/\?bewit=.*$/, ''));
    assert.equal(anonymous.status, 403);
    const res = await fetch(signed); // follows the 303
    assert.equal(res.status, 200);
    assert.equal(Buffer.from(await res.arrayBuffer()).toString('hex'), Buffer.concat([...pattern(size)]).toString('hex'));
  });

  it('lets anonymous callers read public/ names', async () => {
    const { taskId, runId, name } = await uploaded(10);
    const r = await httpRequest(`${q.rootUrl}/api/queue/v1/task/${taskId}/runs/${runId}/artifacts/${encodeURIComponent(name)}`);
    assert.equal(r.status, 303);
    assert.deepEqual(Object.keys(json(r)).sort(), ['storageType', 'url']);
    assert.equal(r.headers.location, json(r).url);
    assert.equal(r.headers['x-taskcluster-artifact-storage-type'], 's3');
  });

  it('refuses tampered and expired URLs', async () => {
    const run = await claimedRun(q);
    const created = await run.worker.createArtifact(run.taskId, run.runId, 'a.bin', { storageType: 's3', expires: inOneHour(), contentType: 'x/y' });
    const tampered = created.putUrl.slice(0, -3) + (created.putUrl.endsWith('AAA') ? 'BBB' : 'AAA');
    const bad = await httpRequest(tampered, { method: 'PUT', body: 'x' });
    assert.equal(bad.status, 401);
    assert.equal(json(bad).code, 'AuthenticationFailed');
    assert.match(json(bad).message, /signature does not match/);
    const garbage = await httpRequest(`${q.rootUrl}/api/queue/v1/artifact-uploads/not-a-token`, { method: 'PUT', body: 'x' });
    assert.equal(garbage.status, 401);

    shiftClock(q, 46 * 60 * 1000);
    try {
      const late = await httpRequest(created.putUrl, { method: 'PUT', body: 'x' });
      assert.equal(late.status, 410);
      assert.equal(json(late).code, 'ResourceExpired');
      assert.match(json(late).message, /call createArtifact again/i);
    } finally {
      resetClock(q);
    }
    const ok = await httpRequest(created.putUrl, { method: 'PUT', body: 'x' });
    assert.equal(ok.status, 200);
    const { url } = await q.queue().getArtifact(run.taskId, run.runId, 'a.bin');
    const badGet = await httpRequest(url.slice(0, -2) + (url.endsWith('AA') ? 'BB' : 'AA'));
    assert.equal(badGet.status, 401);
  });

  it('answers 413 past maxArtifactBytes: by Content-Length, while streaming, and by declared contentLength', async () => {
    const max = q.config.maxArtifactBytes;
    const run = await claimedRun(q);
    const created = await run.worker.createArtifact(run.taskId, run.runId, 'big.bin', { storageType: 's3', expires: inOneHour(), contentType: 'x/y' });
    const byHeader = await httpRequest(created.putUrl, { method: 'PUT', headers: { 'content-length': max + 1 }, body: [...pattern(max + 1)] }).catch((e) => e);
    assert.equal(byHeader.status, 413, String(byHeader));
    assert.equal(json(byHeader).code, 'InputTooLarge');
    // chunked: no Content-Length, so the limit is found while counting
    const streamed = await httpRequest(created.putUrl, { method: 'PUT', body: pattern(max + 100 * 1024) }).catch((e) => e);
    assert.equal(streamed.status, 413, String(streamed));
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM artifact_uploads WHERE task_id = ${run.taskId}`.execute(q.service.ctx.db);
    assert.equal(rows[0]!.n, 0, 'the refused uploads leave nothing behind');

    await assert.rejects(
      run.worker.createArtifact(run.taskId, run.runId, 'huge.bin', { storageType: 's3', expires: inOneHour(), contentType: 'x/y', contentLength: max + 1 }),
      (err: any) => err.statusCode === 413 && err.code === 'InputTooLarge',
    );
  });

  it('keeps nothing of an upload whose client went away half-way', async () => {
    const run = await claimedRun(q);
    const created = await run.worker.createArtifact(run.taskId, run.runId, 'cut.bin', { storageType: 's3', expires: inOneHour(), contentType: 'x/y' });
    const size = 300 * 1024; // several chunks, so chunk rows are stored before the cut
    const rowsLeft = async () =>
      (await sql<{ n: number }>`SELECT count(*)::int AS n FROM artifact_uploads WHERE task_id = ${run.taskId}`.execute(q.service.ctx.db)).rows[0]!.n;
    const until = async (what: string, ok: () => Promise<boolean>) => {
      const deadline = Date.now() + 10_000;
      while (!(await ok())) {
        assert.ok(Date.now() < deadline, what);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const req = http.request(created.putUrl, { method: 'PUT', headers: { 'content-length': size } });
    const closed = new Promise((resolve) => req.on('close', resolve));
    req.on('error', () => {});
    req.write(Buffer.concat([...pattern(200 * 1024)]));
    await until('the upload never started storing chunks', async () => (await rowsLeft()) > 0);
    req.destroy();
    await closed;
    await until('the cut upload was not cleaned up', async () => (await rowsLeft()) === 0);
    await assert.rejects(q.queue().getArtifact(run.taskId, run.runId, 'cut.bin'), (err: any) => err.statusCode === 404);
    assert.equal((await outboxRows(q.service.ctx.db, { taskId: run.taskId, exchange: 'artifact-created' })).length, 0);
  });

  it('checks the bytes against a declared contentLength', async () => {
    const run = await claimedRun(q);
    const created = await run.worker.createArtifact(run.taskId, run.runId, 'sized.bin', {
      storageType: 's3', expires: inOneHour(), contentType: 'x/y', contentLength: 10,
    });
    const wrong = await httpRequest(created.putUrl, { method: 'PUT', body: 'abc' });
    assert.equal(wrong.status, 400);
    assert.match(json(wrong).message, /declared contentLength 10/);
    const right = await httpRequest(created.putUrl, { method: 'PUT', body: '0123456789' });
    assert.equal(right.status, 200);
  });

  it('a second upload replaces the content and sends artifact-created again', async () => {
    const run = await claimedRun(q);
    const name = 'public/twice.txt';
    const body = { storageType: 's3', expires: inOneHour(), contentType: 'text/plain' };
    const first = await run.worker.createArtifact(run.taskId, run.runId, name, body);
    assert.equal((await httpRequest(first.putUrl, { method: 'PUT', body: 'first' })).status, 200);
    const again = await run.worker.createArtifact(run.taskId, run.runId, name, body);
    assert.equal((await httpRequest(again.putUrl, { method: 'PUT', body: 'second!' })).status, 200);
    const got = await httpRequest((await q.queue().getArtifact(run.taskId, run.runId, name)).url);
    assert.equal(got.body.toString(), 'second!');
    assert.equal((await outboxRows(q.service.ctx.db, { taskId: run.taskId, exchange: 'artifact-created' })).length, 2);
    // the replaced upload is garbage for the artifact loop
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM artifact_uploads WHERE task_id = ${run.taskId} AND expires IS NOT NULL`.execute(q.service.ctx.db);
    assert.equal(rows[0]!.n, 1);
  });

  it('accepts an empty artifact and a JSON content type without parsing it', async () => {
    const run = await claimedRun(q);
    const empty = await run.worker.createArtifact(run.taskId, run.runId, 'empty', { storageType: 's3', expires: inOneHour(), contentType: 'x/y' });
    assert.equal((await httpRequest(empty.putUrl, { method: 'PUT', body: '' })).status, 200);
    const got = await httpRequest((await q.queue().getArtifact(run.taskId, run.runId, 'empty')).url);
    assert.equal(got.status, 200);
    assert.equal(got.length, 0);

    const j = await run.worker.createArtifact(run.taskId, run.runId, 'r.json', { storageType: 's3', expires: inOneHour(), contentType: 'application/json' });
    const put = await httpRequest(j.putUrl, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{not json' });
    assert.equal(put.status, 200);
    const back = await httpRequest((await q.queue().getArtifact(run.taskId, run.runId, 'r.json')).url);
    assert.equal(back.headers['content-type'], 'application/json');
    assert.equal(back.body.toString(), '{not json');
  });
});
