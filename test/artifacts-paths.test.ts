// The two ways through createArtifact (s3) and through an upload, and that they answer alike:
// a new s3 artifact of a running run is one statement (artifacts/fresh.ts), everything else the
// locked path; a body of one chunk is checked under the completing transaction's lock, a larger
// one before its body is read (artifacts/transfer.ts).
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import taskcluster from 'taskcluster-client';
import { completionBatcher } from '../services/queue/src/artifacts/complete.js';
import { claimedRun, httpRequest, inOneHour, json, pattern, rejectsWith } from './harness/artifacts.js';
import { resetClock, shiftClock } from './harness/clock.js';
import { outcome } from './harness/concurrency.js';
import { outboxRows } from './harness/outbox.js';
import { startTestQueue, type TestQueue } from './harness/service.js';
import { slugid, taskDef, uniqueQueue } from './harness/tasks.js';
import { waitFor } from './harness/wait.js';

const chunk = 1024;

describe('createArtifact and uploads: fast and locked paths', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ artifactChunkBytes: chunk, maxArtifactBytes: 64 * 1024, enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });

  const s3 = (contentType = 'text/plain', extra: Record<string, unknown> = {}) => ({ storageType: 's3', expires: inOneHour(), contentType, ...extra });
  const artifactNames = async (taskId: string, runId: number) => (await q.queue().listArtifacts(taskId, runId)).artifacts.map((a: any) => a.name);

  it('answers a new s3 artifact and its repeat alike; a different repeat is a 409', async () => {
    const { taskId, runId, worker } = await claimedRun(q);
    const body = s3();
    const fresh = await worker.createArtifact(taskId, runId, 'public/logs/live.log', body);
    const repeat = await worker.createArtifact(taskId, runId, 'public/logs/live.log', body);
    for (const answer of [fresh, repeat]) {
      assert.deepEqual(Object.keys(answer).sort(), ['contentType', 'expires', 'putUrl', 'storageType']);
      assert.equal(answer.storageType, 's3');
      assert.equal(answer.contentType, 'text/plain');
      assert.ok(Date.parse(answer.expires) <= Date.parse(body.expires));
    }
    assert.deepEqual(await q.queue().artifactInfo(taskId, runId, 'public/logs/live.log'), {
      storageType: 's3', name: 'public/logs/live.log', expires: new Date(body.expires).toISOString(), contentType: 'text/plain',
    });
    await assert.rejects(worker.createArtifact(taskId, runId, 'public/logs/live.log', s3('text/html')), rejectsWith(409, 'RequestConflict', /contentType text\/plain/));
    // either putUrl uploads; nothing is present or announced before
    assert.equal((await outboxRows(q.service.ctx.db, { taskId, exchange: 'artifact-created' })).length, 0);
    assert.equal((await httpRequest(fresh.putUrl, { method: 'PUT', body: 'one' })).status, 200);
    assert.equal((await httpRequest(repeat.putUrl, { method: 'PUT', body: 'two' })).status, 200);
    assert.equal((await outboxRows(q.service.ctx.db, { taskId, exchange: 'artifact-created' })).length, 2);
  });

  it('sends every other s3 create down the locked path, with its answers', async () => {
    const crashed = await claimedRun(q, { retries: 0 });
    await crashed.worker.reportException(crashed.taskId, crashed.runId, { reason: 'malformed-payload' });
    const late = await crashed.worker.createArtifact(crashed.taskId, crashed.runId, 'public/logs/live.log', s3());
    assert.equal(late.storageType, 's3');
    shiftClock(q, 26 * 60 * 1000);
    try {
      await assert.rejects(crashed.worker.createArtifact(crashed.taskId, crashed.runId, 'later', s3()), rejectsWith(409, 'RequestConflict', /25 minutes/));
    } finally {
      resetClock(q);
    }

    const done = await claimedRun(q);
    await done.worker.reportCompleted(done.taskId, done.runId);
    await assert.rejects(done.worker.createArtifact(done.taskId, done.runId, 'x', s3()), rejectsWith(409, 'RequestConflict', /it is completed/));

    const queue = q.queue();
    const { taskId, runId } = await claimedRun(q, { expires: taskcluster.fromNowJSON('2 days') });
    await assert.rejects(queue.createArtifact(slugid(), 0, 'x', s3()), rejectsWith(400, 'InputError', /not found/));
    await assert.rejects(queue.createArtifact(taskId, runId + 1, 'x', s3()), rejectsWith(400, 'InputError', /no run 1/));
    await assert.rejects(queue.createArtifact(taskId, '99999999999999999999', 'x', s3()), rejectsWith(400, 'InputError'));
    await assert.rejects(
      queue.createArtifact(taskId, runId, 'x', s3('text/plain', { expires: taskcluster.fromNowJSON('3 days') })),
      rejectsWith(400, 'InputError', /may not outlive their task/),
    );
    const pending = slugid();
    await queue.createTask(pending, taskDef({ taskQueueId: uniqueQueue() }));
    await assert.rejects(queue.createArtifact(pending, 0, 'x', s3()), rejectsWith(400, 'InputError', /never claimed/));
    assert.deepEqual(await artifactNames(taskId, runId), []);
    assert.deepEqual(await artifactNames(done.taskId, done.runId), []);
  });

  it('waits for a resolution of the run in flight: after its commit a 409, after its rollback the artifact', async () => {
    // a transaction that resolves the run the way a report does (task lock, then the run) and
    // holds it open; the state it commits is not a whole report (no message, no group count)
    const resolveHeld = async (taskId: string, runId: number) => {
      const c = new pg.Client({ connectionString: q.database.url });
      await c.connect();
      await c.query('BEGIN');
      await c.query('SELECT 1 FROM tasks WHERE task_id = $1 FOR UPDATE', [taskId]);
      await c.query(`UPDATE runs SET state = 'completed', reason_resolved = 'completed', resolved = now() WHERE task_id = $1 AND run_id = $2`, [taskId, runId]);
      return c;
    };
    const lockWaits = async () =>
      (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(q.service.ctx.db)).rows[0]!.n > 0;

    for (const end of ['COMMIT', 'ROLLBACK'] as const) {
      const { taskId, runId, worker } = await claimedRun(q);
      const held = await resolveHeld(taskId, runId);
      try {
        const created = outcome(worker.createArtifact(taskId, runId, 'public/logs/live.log', s3()));
        await waitFor('createArtifact to wait for the run', lockWaits);
        await held.query(end);
        assert.equal(await created, end === 'COMMIT' ? 409 : 200);
        assert.deepEqual(await artifactNames(taskId, runId), end === 'COMMIT' ? [] : ['public/logs/live.log']);
      } finally {
        await held.end();
      }
    }
  });

  for (const [what, size] of [['one chunk', 100], ['several chunks', 3 * chunk + 10]] as const) {
    it(`uploads a body of ${what} and refuses it alike: no artifact, expired, declared length`, async () => {
      const { taskId, runId, worker } = await claimedRun(q);
      const put = (url: string, n = size) => httpRequest(url, { method: 'PUT', headers: { 'content-length': n }, body: Buffer.concat([...pattern(n)]) });
      const refused = (r: Awaited<ReturnType<typeof put>>, status: number, code: string, message: RegExp) => {
        assert.equal(r.status, status, r.body.toString());
        assert.equal(json(r).code, code);
        assert.match(json(r).message, message);
        assert.equal(r.headers.connection, 'close');
      };
      const db = q.service.ctx.db;

      const gone = await worker.createArtifact(taskId, runId, 'gone', s3());
      await sql`DELETE FROM artifacts WHERE task_id = ${taskId} AND name = 'gone'`.execute(db);
      refused(await put(gone.putUrl), 404, 'ResourceNotFound', /does not exist \(any more\); create it again/);

      const old = await worker.createArtifact(taskId, runId, 'old', s3());
      await sql`UPDATE artifacts SET expires = now() - interval '1 second' WHERE task_id = ${taskId} AND name = 'old'`.execute(db);
      refused(await put(old.putUrl), 410, 'ResourceExpired', /expired at/);

      const sized = await worker.createArtifact(taskId, runId, 'sized', s3('text/plain', { contentLength: size + 1 }));
      refused(await put(sized.putUrl), 400, 'InputError', new RegExp(`Content-Length is ${size}, but createArtifact declared contentLength ${size + 1}`));

      const uploads = async () =>
        (await sql<{ completed: Date | null; expires: Date | null; chunks: number }>`
          SELECT completed, expires, (SELECT count(*)::int FROM artifact_chunks c WHERE c.upload_id = u.upload_id) AS chunks
          FROM artifact_uploads u WHERE task_id = ${taskId} ORDER BY completed`.execute(db)).rows;
      assert.deepEqual(await uploads(), [], 'refused uploads leave nothing behind');

      const ok = await worker.createArtifact(taskId, runId, 'ok', s3('application/octet-stream'));
      assert.equal((await put(ok.putUrl)).status, 200);
      assert.equal((await put(ok.putUrl, size + 1)).status, 200);
      const got = await httpRequest((await q.queue().getArtifact(taskId, runId, 'ok')).url);
      assert.ok(got.body.equals(Buffer.concat([...pattern(size + 1)])));
      const [first, second] = await uploads();
      assert.equal(first!.chunks, Math.ceil(size / chunk));
      assert.ok(first!.expires, 'the replaced upload is garbage for the artifact loop');
      assert.equal(second!.chunks, Math.ceil((size + 1) / chunk));
      assert.equal(second!.expires, null);
      const events = await outboxRows(db, { taskId, exchange: 'artifact-created' });
      assert.deepEqual(events.map((e) => e.body.artifact.name), ['ok', 'ok']);
    });
  }

  it('refuses to complete an upload of several chunks whose artifact, or whose stored row, went while it was sent', async () => {
    const db = q.service.ctx.db;
    const size = 2 * chunk + 10;
    const body = Buffer.concat([...pattern(size)]);
    for (const [gone, message] of [
      ['artifact', /no longer exists \(it expired during the upload\)/],
      ['upload', /deleted before it completed/],
    ] as const) {
      const { taskId, runId, worker } = await claimedRun(q);
      const created = await worker.createArtifact(taskId, runId, 'cut', s3());
      const req = http.request(created.putUrl, { method: 'PUT', headers: { 'content-length': size } });
      const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
        req.on('response', (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        });
        req.on('error', reject);
      });
      // all but the last byte: both full chunks are stored, the tail waits for the end of the body
      req.write(body.subarray(0, size - 1));
      const stored = await waitFor('the upload to store its full chunks', async () =>
        (await sql<{ upload_id: string }>`
          SELECT u.upload_id FROM artifact_uploads u WHERE task_id = ${taskId}
          AND (SELECT count(*) FROM artifact_chunks c WHERE c.upload_id = u.upload_id) = 2`.execute(db)).rows[0]?.upload_id);
      if (gone === 'artifact') await sql`DELETE FROM artifacts WHERE task_id = ${taskId} AND name = 'cut'`.execute(db);
      else await sql`DELETE FROM artifact_uploads WHERE upload_id = ${stored}`.execute(db);
      req.end(body.subarray(size - 1));
      const r = await answer;
      assert.equal(r.status, 410, r.body);
      assert.equal(JSON.parse(r.body).code, 'ResourceExpired');
      assert.match(JSON.parse(r.body).message, message);
      assert.equal((await outboxRows(db, { taskId, exchange: 'artifact-created' })).length, 0);
    }
  });

  it('completes uploads that arrive together in one transaction, each answered as if alone', async () => {
    const db = q.service.ctx.db;
    const batcher = completionBatcher(q.service.ctx);
    const runs = await Promise.all(Array.from({ length: 7 }, () => claimedRun(q)));
    const [x, y, a, b, c, d, e] = runs;
    const create = (r: (typeof runs)[number], name: string, extra: Record<string, unknown> = {}) => r.worker.createArtifact(r.taskId, r.runId, name, s3('text/plain', extra));
    const put = (url: string, body: Buffer) => httpRequest(url, { method: 'PUT', headers: { 'content-length': body.length }, body });
    const bytes = (n: number, seed: number) => Buffer.concat([...pattern(n, seed)]);
    const [holdX, holdY, logA, logB, logC, sizedD, goneE] = await Promise.all([
      create(x!, 'hold'), create(y!, 'hold'), create(a!, 'log'), create(b!, 'log'), create(c!, 'log'), create(d!, 'sized', { contentLength: 11 }), create(e!, 'gone'),
    ]);
    await sql`DELETE FROM artifacts WHERE task_id = ${e!.taskId} AND name = 'gone'`.execute(db);

    // both lanes wait on task locks held here, so what comes next waits for a lane, together
    const holder = new pg.Client({ connectionString: q.database.url });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM tasks WHERE task_id = ANY($1) FOR UPDATE', [[x!.taskId, y!.taskId]]);
    const before = { ...batcher.stats };
    const held = [put(holdX.putUrl, bytes(10, 1)), put(holdY.putUrl, bytes(10, 2))];
    const lockWaits = async () =>
      (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(db)).rows[0]!.n;
    await waitFor('both lanes to wait on the held tasks', async () => (await lockWaits()) === 2);
    const calls = {
      oneChunk: put(logA.putUrl, bytes(100, 3)),
      severalChunks: put(logB.putUrl, bytes(3 * chunk + 1, 4)),
      firstOfTwo: put(logC.putUrl, bytes(50, 5)),
      secondOfTwo: put(logC.putUrl, bytes(60, 6)),
      declared: put(sizedD.putUrl, bytes(10, 7)),
      noArtifact: put(goneE.putUrl, bytes(10, 8)),
    };
    await waitFor('the six uploads to wait for a lane', () => batcher.queued === 6);
    await holder.query('COMMIT');
    await holder.end();
    const r = Object.fromEntries(await Promise.all(Object.entries(calls).map(async ([k, p]) => [k, await p] as const)));
    for (const h of await Promise.all(held)) assert.equal(h.status, 200);
    const after = batcher.stats;
    assert.deepEqual([after.batches - before.batches, after.items - before.items, after.fallbacks - before.fallbacks], [3, 8, 0]);

    const content = async (run: (typeof runs)[number], name: string) => (await httpRequest((await q.queue().getArtifact(run.taskId, run.runId, name)).url)).body;
    const events = async (run: (typeof runs)[number]) => (await outboxRows(db, { taskId: run.taskId, exchange: 'artifact-created' })).length;
    assert.equal(r.oneChunk!.status, 200);
    assert.ok((await content(a!, 'log')).equals(bytes(100, 3)));
    assert.equal(r.severalChunks!.status, 200);
    assert.ok((await content(b!, 'log')).equals(bytes(3 * chunk + 1, 4)));
    assert.equal(await events(a!), 1);
    assert.equal(await events(b!), 1);
    // the same artifact twice: both complete, in turn; the one that came second is the content
    assert.equal(r.firstOfTwo!.status, 200);
    assert.equal(r.secondOfTwo!.status, 200);
    const c2 = await content(c!, 'log');
    assert.ok(c2.equals(bytes(50, 5)) || c2.equals(bytes(60, 6)));
    assert.equal(await events(c!), 2);
    const uploadsC = (await sql<{ expires: Date | null; size: string }>`SELECT expires, size FROM artifact_uploads WHERE task_id = ${c!.taskId}`.execute(db)).rows;
    assert.deepEqual(uploadsC.map((u) => [Number(u.size), u.expires === null]).sort(), [[50, c2.length === 50], [60, c2.length === 60]].sort());
    assert.equal(r.declared!.status, 400);
    assert.match(json(r.declared!).message, /Content-Length is 10, but createArtifact declared contentLength 11/);
    assert.equal(r.noArtifact!.status, 404);
    assert.equal(json(r.noArtifact!).code, 'ResourceNotFound');
    for (const run of [d!, e!]) {
      assert.equal(await events(run), 0);
      assert.equal((await sql<{ n: number }>`SELECT count(*)::int AS n FROM artifact_uploads WHERE task_id = ${run.taskId}`.execute(db)).rows[0]!.n, 0);
    }
  });
});
