// Helpers for the concurrency tests: bounded parallelism, status codes of racing calls, draining a
// queue with claimWork, and the check that every run was handed out exactly once.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { invariantViolations } from './invariants.js';
import type { TestQueue } from './service.js';
import { slugid, taskDef } from './tasks.js';

/** Runs `fn` over `items` with at most `n` in flight. */
export async function limited<T, R>(items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

/** The status code of a client call: 200, or the error's status. */
export async function outcome(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err: any) {
    if (!err.statusCode) throw err;
    return err.statusCode;
  }
}

/** Creates `n` tasks, 8 at a time. */
export async function createMany(q: TestQueue, n: number, overrides: Record<string, unknown>): Promise<string[]> {
  const ids = Array.from({ length: n }, () => slugid());
  await limited(ids, 8, (taskId) => q.queue().createTask(taskId, taskDef(overrides)));
  return ids;
}

/** Claims until a long-poll comes back empty; returns `taskId/runId` of every claim. */
export async function drain(queue: any, taskQueueId: string, workerId: string, batch: number): Promise<string[]> {
  const got: string[] = [];
  for (;;) {
    const { tasks } = await queue.claimWork(taskQueueId, { workerGroup: 'wg', workerId, tasks: batch });
    if (tasks.length === 0) return got;
    for (const c of tasks) got.push(`${c.status.taskId}/${c.runId}`);
  }
}

/** claims[i] are the runs worker `w<i>` got: together run 0 of each task, once, and the database agrees. */
export async function assertClaimedOnce(q: TestQueue, claims: string[][], taskIds: string[]): Promise<void> {
  const all = claims.flat();
  assert.equal(new Set(all).size, all.length, 'a run was handed out twice');
  assert.deepEqual(new Set(all), new Set(taskIds.map((t) => `${t}/0`)));
  const holders = await sql<{ task_id: string; worker_id: string }>`
    SELECT task_id, worker_id FROM runs WHERE task_id = ANY(${taskIds}) AND state = 'running'`.execute(q.service.ctx.db);
  assert.equal(holders.rows.length, taskIds.length);
  const byTask = new Map(holders.rows.map((r) => [r.task_id, r.worker_id]));
  claims.forEach((list, i) => {
    for (const c of list) assert.equal(byTask.get(c.split('/')[0]!), `w${i}`);
  });
  assert.deepEqual(await invariantViolations(q.service.ctx.db, taskIds), []);
}
