// @conveyor/client's attempts against a stub HTTP server: answers, the per-attempt time limit (with
// retries), and the caller's AbortSignal (no retry once aborted).
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { getEventListeners } from 'node:events';
import { QueueClient, QueueError, sleep } from '@conveyor/client';

describe('@conveyor/client attempts', () => {
  let server: http.Server;
  let rootUrl: string;
  const seen: string[] = [];
  before(async () => {
    server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      // /status answers, /slow never does, /broken is a 500
      if (req.url?.endsWith('/broken/status')) {
        res.statusCode = 500;
        res.end();
      } else if (req.url?.endsWith('/status')) {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ status: { state: 'pending' } }));
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    rootUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const client = (opts: { timeoutMs?: number; retries?: number } = {}) => new QueueClient({ rootUrl, retries: 0, ...opts });
  const attempts = (path: string) => seen.filter((s) => s.endsWith(path)).length;

  it('answers with the JSON body', async () => {
    assert.deepEqual(await client().status('abc'), { status: { state: 'pending' } });
  });

  it('gives each attempt its time limit, and retries after one runs out', async () => {
    const started = Date.now();
    await assert.rejects(client({ timeoutMs: 100 }).task('slow1'), /no answer within 100 ms/);
    assert.equal(attempts('/task/slow1'), 1);
    await assert.rejects(client({ timeoutMs: 100, retries: 1 }).task('slow2'), /no answer within 100 ms/);
    assert.equal(attempts('/task/slow2'), 2);
    assert.ok(Date.now() - started < 5000);
  });

  it("stops at the caller's signal, before or during an attempt, without retrying", async () => {
    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(client({ retries: 3 }).reclaimTask('slow3', 0, aborted.signal), { name: 'AbortError' });
    assert.equal(attempts('/task/slow3/runs/0/reclaim'), 0);
    const later = new AbortController();
    const call = client({ retries: 3 }).reclaimTask('slow4', 0, later.signal);
    while (attempts('/task/slow4/runs/0/reclaim') === 0) await new Promise((r) => setImmediate(r));
    later.abort();
    await assert.rejects(call, { name: 'AbortError' });
    assert.equal(attempts('/task/slow4/runs/0/reclaim'), 1);
  });

  it('retries a 5xx, then answers with a QueueError', async () => {
    await assert.rejects(client({ retries: 1 }).status('broken'), (err: unknown) => err instanceof QueueError && err.statusCode === 500);
    assert.equal(attempts('/task/broken/status'), 2);
  });
});

describe('@conveyor/client sleep', () => {
  it('leaves no abort listener behind on a long-lived signal, and ends at once when it aborts', async () => {
    const polling = new AbortController();
    for (let i = 0; i < 20; i++) await sleep(1, polling.signal);
    assert.equal(getEventListeners(polling.signal, 'abort').length, 0);
    const t = Date.now();
    const long = sleep(60_000, polling.signal);
    assert.equal(getEventListeners(polling.signal, 'abort').length, 1);
    polling.abort();
    await long;
    assert.ok(Date.now() - t < 1000);
    assert.equal(getEventListeners(polling.signal, 'abort').length, 0);
  });
});
