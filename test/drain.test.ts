// SIGTERM drains: the service (a child process running `conveyor start`) answers its open
// claimWork long-polls with `{tasks: []}` at once rather than after the poll timeout, and exits 0.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import taskcluster from 'taskcluster-client';
import { createDb } from '../services/queue/src/db/database.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { killChild, startChildService, type ChildService } from './harness/child-service.js';
import { uniqueQueue } from './harness/tasks.js';
import { waitFor } from './harness/wait.js';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('SIGTERM', () => {
  let database: TestDatabase;
  let svc: ChildService | undefined;
  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => {
    if (svc) await killChild(svc);
    await database?.drop();
  });

  it('answers open long-polls with no tasks at once, then exits 0', async () => {
    const port = await freePort();
    const rootUrl = `http://localhost:${port}`;
    const credentials = { clientId: 'root', accessToken: randomBytes(16).toString('hex') };
    svc = await startChildService({
      DATABASE_URL: database.url, PORT: String(port), ROOT_URL: rootUrl, ROOT_ACCESS_TOKEN: credentials.accessToken,
      CLAIM_WORK_TIMEOUT: '20',
    }, rootUrl);
    const queue = new taskcluster.Queue({ rootUrl, credentials, retries: 0 });
    const taskQueueId = uniqueQueue();
    const polls = Array.from({ length: 20 }, (_, i) => {
      const started = Date.now();
      return queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId: `w${i}`, tasks: 1 }).then((r: any) => ({ r, ms: Date.now() - started }));
    });
    // each claimWork records its worker when it starts polling
    const { db } = createDb(database.url, 1);
    try {
      await waitFor('every long-poll to be open', async () => {
        const rows = await db.selectFrom('workers').select('worker_id').where('task_queue_id', '=', taskQueueId).execute();
        return rows.length === 20;
      });
    } finally {
      await db.destroy();
    }
    const exited = new Promise<number | null>((resolve) => svc!.child.once('exit', (code) => resolve(code)));
    const signalled = Date.now();
    svc.child.kill('SIGTERM');
    const answers = await Promise.allSettled(polls);
    const answeredIn = Date.now() - signalled;
    const code = await exited;
    for (const a of answers) {
      assert.equal(a.status, 'fulfilled', `a long-poll failed: ${a.status === 'rejected' ? a.reason : ''}; exit code ${code}\n${svc.output()}`);
      assert.deepEqual((a as PromiseFulfilledResult<{ r: unknown }>).value.r, { tasks: [] });
    }
    assert.ok(answeredIn < 3000, `long-polls answered ${answeredIn} ms after SIGTERM (poll timeout 20 s)`);
    assert.equal(code, 0, svc.output());
    assert.ok(Date.now() - signalled < 10_000, `exit took ${Date.now() - signalled} ms`);
  });
});
