// How the task-queue views (taskQueueCounts, listPendingTasks, listClaimedTasks) scale with a big
// backlog, with and without an extra index on `pending` for the listing's (inserted, task_id) order,
// and what that index would cost the hot path (every pending row is inserted once and deleted once).
//
//   node --import tsx bench/task-queue-views/run.ts [-- --pending 200000 --running 4000 --iterations 30]
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { createDb, type Db } from '../../services/queue/src/db/database.js';
import { claimedCount, listClaimed, listPending, pendingCount } from '../../services/queue/src/workers/queue-contents.js';
import { createTestDatabase } from '../../test/harness/db.js';

const { values: args } = parseArgs({
  options: {
    pending: { type: 'string', default: '200000' },
    running: { type: 'string', default: '4000' },
    iterations: { type: 'string', default: '30' },
    churn: { type: 'string', default: '6000' },
  },
});
const nPending = Number(args.pending);
const nRunning = Number(args.running);
const iterations = Number(args.iterations);
const churn = Number(args.churn);
const big = 'bench/big';

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function time(label: string, fn: () => Promise<unknown>): Promise<{ label: string; p50: number; p99: number }> {
  await fn();
  const ms: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t = performance.now();
    await fn();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  return { label, p50: pct(ms, 50), p99: pct(ms, 99) };
}

/** Half the tasks in the big queue, the rest spread over 50 others; `nRunning` of them claimed. */
async function populate(db: Db): Promise<void> {
  const total = nPending + nRunning;
  await sql`
    INSERT INTO tasks (task_id, task_queue_id, scheduler_id, project_id, task_group_id, dependencies, requires, routes,
      priority, retries, retries_left, created, deadline, expires, scopes, payload, metadata, tags, extra)
    SELECT 't' || lpad(g::text, 9, '0'), CASE WHEN g % 2 = 0 THEN ${big} ELSE 'bench/other-' || (g % 50) END,
      '-', 'none', 'group', '[]', 'all-completed', '[]', 'lowest', 5, 5, now(), now() + interval '1 day',
      now() + interval '1 year', '[]', '{"image": "x"}', '{"name": "bench"}', '{}', '{}'
    FROM generate_series(1, ${total}::int) g`.execute(db);
  await sql`
    INSERT INTO runs (task_id, run_id, state, reason_created, scheduled, worker_group, worker_id, taken_until, started)
    SELECT task_id, 0,
      CASE WHEN n <= ${nRunning}::int THEN 'running' ELSE 'pending' END, 'scheduled', now(),
      CASE WHEN n <= ${nRunning}::int THEN 'wg' END, CASE WHEN n <= ${nRunning}::int THEN 'w' || n END,
      CASE WHEN n <= ${nRunning}::int THEN now() + interval '20 minutes' END,
      CASE WHEN n <= ${nRunning}::int THEN now() - n * interval '1 millisecond' END
    FROM (SELECT task_id, row_number() OVER (ORDER BY task_id) n FROM tasks) t`.execute(db);
  await sql`
    INSERT INTO pending (task_queue_id, priority, inserted, task_id, run_id)
    SELECT t.task_queue_id, 1, now() + row_number() OVER (ORDER BY t.task_id) * interval '1 microsecond', t.task_id, 0
    FROM tasks t JOIN runs r ON r.task_id = t.task_id AND r.state = 'pending'`.execute(db);
  await sql`VACUUM ANALYZE`.execute(db);
}

async function measureViews(db: Db) {
  const now = new Date();
  const middle = await listPending(db, big, { limit: Math.floor(nPending / 4) });
  return [
    await time('pendingCount (big queue)', () => pendingCount(db, big)),
    await time('claimedCount (big queue)', () => claimedCount(db, big, now)),
    await time('listPending first page of 100', () => listPending(db, big, { limit: 100 })),
    await time('listPending page of 100, mid-queue', () => listPending(db, big, { limit: 100, continuationToken: middle.continuationToken })),
    await time('listClaimed first page of 100', () => listClaimed(db, big, now, { limit: 100 })),
  ];
}

/** Insert + delete of one pending row per transaction, 8 at a time: the index's cost on the hot path. */
async function measureChurn(db: Db): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (;;) {
        const i = next++;
        if (i >= churn) return;
        const taskId = `churn-${i}-${Math.random()}`;
        await db.insertInto('pending').values({ task_queue_id: big, priority: 1, task_id: taskId, run_id: 0 }).execute();
        await db.deleteFrom('pending').where('task_id', '=', taskId).where('run_id', '=', 0).execute();
      }
    }),
  );
  return churn / ((performance.now() - started) / 1000);
}

async function main() {
  const database = await createTestDatabase();
  const { db } = createDb(database.url, 10);
  try {
    const t0 = performance.now();
    await populate(db);
    console.log(`populated ${nPending} pending (half in ${big}) and ${nRunning} running runs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // the migrated template has the index (migration 0200): measure without it first
    await sql`DROP INDEX IF EXISTS pending_list`.execute(db);
    const without = await measureViews(db);
    await sql`CREATE INDEX pending_list ON pending (task_queue_id, inserted, task_id)`.execute(db);
    await sql`ANALYZE pending`.execute(db);
    const withIndex = await measureViews(db);
    const plan = await sql<{ 'QUERY PLAN': string }>`EXPLAIN SELECT task_id FROM pending WHERE task_queue_id = ${big}
      ORDER BY inserted, task_id LIMIT 101`.execute(db);

    // the hot-path cost, in rounds ordered without/with then with/without, so drift of a shared
    // machine and warm-up hit both sides alike
    const churnRates: { without: number[]; with: number[] } = { without: [], with: [] };
    const measure = async (index: boolean) => {
      if (index) await sql`CREATE INDEX IF NOT EXISTS pending_list ON pending (task_queue_id, inserted, task_id)`.execute(db);
      else await sql`DROP INDEX IF EXISTS pending_list`.execute(db);
      await sql`VACUUM pending`.execute(db);
      (index ? churnRates.with : churnRates.without).push(await measureChurn(db));
    };
    for (let round = 0; round < 4; round++) {
      await measure(round % 2 === 1);
      await measure(round % 2 === 0);
    }

    console.log('\nquery latency, ms (p50 / p99), without → with index pending (task_queue_id, inserted, task_id)');
    without.forEach((w, i) => {
      const x = withIndex[i]!;
      console.log(`  ${w.label.padEnd(38)} ${w.p50.toFixed(2).padStart(8)} / ${w.p99.toFixed(2).padStart(8)}  →  ${x.p50.toFixed(2).padStart(8)} / ${x.p99.toFixed(2).padStart(8)}`);
    });
    console.log(`  listing plan with the index: ${plan.rows.map((r) => r['QUERY PLAN'].trim()).join(' | ')}`);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
    console.log(`\npending insert+delete pairs/s, 8 connections, 4 rounds (ABBA order): without [${fmt(churnRates.without)}], with [${fmt(churnRates.with)}]`);
    console.log(`ratio of medians with/without: ${(median(churnRates.with) / median(churnRates.without)).toFixed(3)}`);
  } finally {
    await db.destroy();
    await database.drop();
  }
}

await main();
