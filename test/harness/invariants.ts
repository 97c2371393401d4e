// The state-machine invariants of services/queue/src/runs/README.md, checked against the database
// after a test has driven the service (especially concurrently). Returns the violations found.
import { sql } from 'kysely';
import type { Db } from '../../services/queue/src/db/database.js';

const unresolved = ['pending', 'running'];

export async function invariantViolations(db: Db, taskIds?: string[]): Promise<string[]> {
  const problems: string[] = [];
  const tasks = await sql<{ task_id: string; task_group_id: string; retries: number; retries_left: number }>`
    SELECT task_id, task_group_id, retries, retries_left FROM tasks
    WHERE ${taskIds ? sql`task_id = ANY(${taskIds})` : sql`true`}`.execute(db);
  const runs = await sql<{ task_id: string; run_id: number; state: string; taken_until: Date | null; worker_id: string | null }>`
    SELECT task_id, run_id, state, taken_until, worker_id FROM runs ORDER BY task_id, run_id`.execute(db);
  const pending = await sql<{ task_id: string; run_id: number }>`SELECT task_id, run_id FROM pending`.execute(db);

  const runsOf = new Map<string, typeof runs.rows>();
  for (const r of runs.rows) {
    let list = runsOf.get(r.task_id);
    if (!list) runsOf.set(r.task_id, (list = []));
    list.push(r);
  }
  const pendingRows = new Map<string, number>();
  for (const p of pending.rows) {
    const k = `${p.task_id}/${p.run_id}`;
    pendingRows.set(k, (pendingRows.get(k) ?? 0) + 1);
  }

  for (const t of tasks.rows) {
    const list = runsOf.get(t.task_id) ?? [];
    list.forEach((r, i) => {
      const id = `${t.task_id}/${r.run_id}`;
      if (r.run_id !== i) problems.push(`${t.task_id}: run ids are not 0..n-1 (${list.map((x) => x.run_id).join(',')})`);
      const last = i === list.length - 1;
      if (!last && unresolved.includes(r.state)) problems.push(`${id} is ${r.state} but is not the latest run`);
      if (r.state === 'running' && !r.taken_until) problems.push(`${id} is running without taken_until`);
      if (r.state === 'running' && !r.worker_id) problems.push(`${id} is running without a worker`);
      const rows = pendingRows.get(id) ?? 0;
      if (r.state === 'pending' && rows !== 1) problems.push(`${id} is pending with ${rows} pending rows`);
      if (r.state !== 'pending' && rows !== 0) problems.push(`${id} is ${r.state} but has a pending row`);
    });
    if (list.length > 50) problems.push(`${t.task_id} has ${list.length} runs (max 50)`);
    if (t.retries_left < 0 || t.retries_left > t.retries) problems.push(`${t.task_id}: retries_left ${t.retries_left} of ${t.retries}`);
  }
  for (const k of pendingRows.keys()) {
    const [taskId] = k.split('/');
    if (!runsOf.has(taskId!) && (!taskIds || taskIds.includes(taskId!))) problems.push(`pending row ${k} has no run`);
  }

  // task_groups.unresolved = tasks of the group that are unscheduled, pending or running
  const groups = await sql<{ task_group_id: string; unresolved: number; actual: number }>`
    SELECT g.task_group_id, g.unresolved,
      (SELECT count(*)::int FROM tasks t WHERE t.task_group_id = g.task_group_id AND coalesce(
        (SELECT r.state FROM runs r WHERE r.task_id = t.task_id ORDER BY r.run_id DESC LIMIT 1), 'unscheduled')
        IN ('unscheduled', 'pending', 'running')) AS actual
    FROM task_groups g`.execute(db);
  for (const g of groups.rows) {
    if (g.unresolved !== g.actual) problems.push(`group ${g.task_group_id}: unresolved = ${g.unresolved}, actual ${g.actual}`);
  }
  return problems;
}

/** Row counts of the tables a task's lifecycle writes, to show that a refused request stored nothing. */
export async function tableCounts(db: Db): Promise<Record<string, number>> {
  const r = await sql<Record<string, number>>`
    SELECT (SELECT count(*)::int FROM tasks) AS tasks, (SELECT count(*)::int FROM runs) AS runs,
      (SELECT count(*)::int FROM pending) AS pending, (SELECT count(*)::int FROM task_groups) AS task_groups,
      (SELECT count(*)::int FROM task_deadlines) AS task_deadlines,
      (SELECT count(*)::int FROM task_dependencies) AS task_dependencies,
      (SELECT count(*)::int FROM outbox) AS outbox`.execute(db);
  return r.rows[0]!;
}
