// Zero loss under kill -9: producers create tasks and workers claim and complete them while the
// service process is SIGKILLed and restarted several times. Afterwards every transition committed in
// the database has its message on a durable queue (none lost), each task's messages arrived in
// commit order, and duplicates (allowed: at-least-once) are counted.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import taskcluster from 'taskcluster-client';
import { amqpUrl } from './harness/service.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { allExchanges, deleteExchanges, listen, type Listener } from './harness/amqp.js';
import { killChild, startChildService, type ChildService } from './harness/child-service.js';
import { slugid, taskDef } from './harness/tasks.js';
import { waitFor } from './harness/wait.js';

const kills = 4;
/** Past this, stop killing (after at least 2 kills): restarts are slow on a loaded machine. */
const killBudgetMs = 18_000;
/** Resolutions the clients must see after each restart before the next kill: work is in flight. */
const progressPerRound = 8;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

const until = <T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000) =>
  waitFor(what, check, { timeoutMs });

/** Retries a call through the outages; a 4xx is an answer, not an outage. */
async function persist<T>(stop: () => boolean, call: () => Promise<T>): Promise<T | undefined> {
  while (!stop()) {
    try {
      return await call();
    } catch (err: any) {
      if (err.statusCode && err.statusCode < 500) return undefined;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return undefined;
}

const resolutionExchange: Record<string, string> = { completed: 'task-completed', failed: 'task-failed', exception: 'task-exception' };

describe('events under kill -9', () => {
  let db: TestDatabase | undefined;
  let svc: ChildService | undefined;
  let listener: Listener | undefined;
  const prefix = `exchange/conveyor-test-${randomBytes(4).toString('hex')}/v1/`;
  const durableQueue = `queue/conveyor-test/kill-${randomBytes(4).toString('hex')}`;
  after(async () => {
    if (svc) await killChild(svc);
    await listener?.close();
    await deleteExchanges(prefix, [durableQueue]);
    await db?.drop();
  });

  it('loses no committed transition across repeated SIGKILLs of the service', async () => {
    db = await createTestDatabase();
    const port = await freePort();
    const rootUrl = `http://127.0.0.1:${port}`;
    const accessToken = randomBytes(16).toString('hex');
    const env = {
      DATABASE_URL: db.url, AMQP_URL: amqpUrl, EXCHANGE_PREFIX: prefix, PORT: String(port), ROOT_URL: rootUrl,
      ROOT_ACCESS_TOKEN: accessToken, CLAIM_WORK_TIMEOUT: '1', RELAY_POLL_INTERVAL_MS: '100', AMQP_RECONNECT_MAX_MS: '500',
      DB_POOL_SIZE: '6', RELAY_BATCH_SIZE: '50',
    };
    // the durable queue exists before the first event
    listener = await listen(allExchanges(prefix), { durableName: durableQueue });
    svc = await startChildService(env, rootUrl);

    const queue = new taskcluster.Queue({ rootUrl, credentials: { clientId: 'root', accessToken }, retries: 0, timeout: 5000 });
    const taskQueueId = `kill-prov/wt-${randomBytes(3).toString('hex')}`;
    let stopLoad = false;
    let resolvedByClients = 0;
    const stopped = () => stopLoad;
    const producer = async () => {
      while (!stopLoad) {
        const taskId = slugid();
        await persist(stopped, () => queue.createTask(taskId, taskDef({ taskQueueId, routes: ['index.kill'] })));
      }
    };
    const worker = async (n: number) => {
      while (!stopLoad) {
        const claim: any = await persist(stopped, () => queue.claimWork(taskQueueId, { workerGroup: 'kill', workerId: `w${n}`, tasks: 4 }));
        for (const t of claim?.tasks ?? []) {
          const w = new taskcluster.Queue({ rootUrl, credentials: t.credentials, retries: 0, timeout: 5000 });
          const report = n % 3 === 0 ? () => w.reportFailed(t.status.taskId, t.runId) : () => w.reportCompleted(t.status.taskId, t.runId);
          if (await persist(stopped, report)) resolvedByClients++;
        }
      }
    };
    const load = Promise.all([producer(), producer(), producer(), worker(1), worker(2), worker(3)]);

    const progress = async () => {
      const base = resolvedByClients;
      await until('load to make progress', () => resolvedByClients >= base + progressPerRound, 20_000);
    };
    const started = Date.now();
    let killed = 0;
    while (killed < kills && (killed < 2 || Date.now() - started < killBudgetMs)) {
      // kill while work is flowing, at a random point of it
      await progress();
      await new Promise((r) => setTimeout(r, Math.random() * 300));
      await killChild(svc);
      killed++;
      svc = await startChildService(env, rootUrl);
    }
    await progress();
    stopLoad = true;
    await load;

    // what the database says happened
    const check = new pg.Client({ connectionString: db.url });
    await check.connect();
    try {
      await until('outbox drained', async () => (await check.query('SELECT count(*)::int AS n FROM outbox WHERE published IS NULL')).rows[0].n === 0, 20_000);
      const outbox = (await check.query<{ id: string }>('SELECT id::text AS id FROM outbox ORDER BY id')).rows.map((r) => r.id);
      const runs = (
        await check.query<{ task_id: string; run_id: number; state: string; worker_id: string | null }>(
          'SELECT task_id, run_id, state, worker_id FROM runs ORDER BY task_id, run_id',
        )
      ).rows;
      const tasks = (await check.query<{ task_id: string }>('SELECT task_id FROM tasks')).rows.map((r) => r.task_id);
      await listener.waitFor(() => true, outbox.length, 20_000).catch(() => undefined);

      const expected: Array<{ exchange: string; taskId: string; runId: string }> = tasks.map((taskId) => ({ exchange: 'task-defined', taskId, runId: '_' }));
      for (const r of runs) {
        const runId = String(r.run_id);
        expected.push({ exchange: 'task-pending', taskId: r.task_id, runId });
        if (r.worker_id) expected.push({ exchange: 'task-running', taskId: r.task_id, runId });
        if (resolutionExchange[r.state]) expected.push({ exchange: resolutionExchange[r.state]!, taskId: r.task_id, runId });
      }
      const seen = new Set(
        listener.messages.map((m) => {
          const words = m.routingKey.split('.');
          return `${m.exchange.slice(prefix.length)} ${words[1]} ${words[2]}`;
        }),
      );
      const lost = expected.filter((e) => !seen.has(`${e.exchange} ${e.taskId} ${e.runId}`));
      const counts = new Map<string, number>();
      for (const m of listener.messages) counts.set(m.properties.messageId, (counts.get(m.properties.messageId) ?? 0) + 1);
      const duplicated = [...counts.values()].filter((n) => n > 1).length;
      const missingRows = outbox.filter((id) => !counts.has(id));

      // per task, first deliveries arrive in commit (= outbox id) order
      const firstByTask = new Map<string, bigint[]>();
      const firstSeen = new Set<string>();
      for (const m of listener.messages) {
        if (firstSeen.has(m.properties.messageId)) continue;
        firstSeen.add(m.properties.messageId);
        const words = m.routingKey.split('.');
        if (words.length !== 10) continue;
        firstByTask.set(words[1]!, [...(firstByTask.get(words[1]!) ?? []), BigInt(m.properties.messageId)]);
      }
      const outOfOrder = [...firstByTask.values()].filter((ids) => ids.some((id, i) => i > 0 && id < ids[i - 1]!)).length;
      const resolved = runs.filter((r) => resolutionExchange[r.state]).length;
      process.stdout.write(
        `kill -9 x${killed}: tasks=${tasks.length} runs=${runs.length} resolved=${resolved} expected=${expected.length} ` +
          `ok=${expected.length - lost.length} lost=${lost.length} duplicated=${duplicated} outOfOrderTasks=${outOfOrder} ` +
          `outboxRows=${outbox.length} received=${listener.messages.length}\n`,
      );
      assert.ok(tasks.length > 20 && resolved > 10, `too little load to mean anything: ${tasks.length} tasks, ${resolved} resolved`);
      assert.deepEqual(lost, []);
      assert.deepEqual(missingRows, []);
      assert.equal(outOfOrder, 0);
    } finally {
      await check.end();
    }
  });
});
