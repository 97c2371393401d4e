// Recording a new task's dependencies, inside its createTask transaction.
import { sql } from 'kysely';
import type { Trx } from '../db/database.js';
import { ApiError } from '../http/errors.js';
import { isResolvedState } from '../tasks/status.js';

export interface DependencyInput {
  taskId: string;
  dependencies: string[];
  requires: string;
  deadline: Date;
  expires: Date;
}

/**
 * Locks the dependencies (FOR SHARE) before anything else in createTask, so a dependency cannot
 * resolve between our reading its state and our edge becoming visible: its resolver, which locks
 * the row FOR UPDATE, waits for our commit and then sees the edge. Returns the satisfied set.
 *
 * The states are read in a second statement, begun once every lock is granted. Read in the locking
 * statement they would come from its snapshot, taken before it waited: a resolution committed
 * while we waited would be missed, and our edge, inserted unsatisfied, never seen by its resolver
 * (test/deps-race.test.ts holds a resolution open to prove it).
 */
export async function lockDependencies(trx: Trx, d: DependencyInput): Promise<Set<string>> {
  const others = [...new Set(d.dependencies)].filter((id) => id !== d.taskId).sort();
  if (others.length === 0) return new Set();
  await sql`SELECT task_id FROM tasks WHERE task_id = ANY(${others}) ORDER BY task_id FOR SHARE`.execute(trx);
  const found = await sql<{ task_id: string; expires: Date; state: string | null }>`
    SELECT t.task_id, t.expires,
      (SELECT r.state FROM runs r WHERE r.task_id = t.task_id ORDER BY r.run_id DESC LIMIT 1) AS state
    FROM tasks t WHERE t.task_id = ANY(${others})`.execute(trx);
  const byId = new Map(found.rows.map((r) => [r.task_id, r]));
  const missing = others.filter((id) => !byId.has(id));
  if (missing.length > 0) {
    throw new ApiError('InputError', `taskId ${d.taskId} depends on tasks that do not exist: ${listed(missing)}`, {
      missingTaskDependencies: missing,
    });
  }
  const expiring = found.rows.filter((r) => new Date(r.expires) < d.deadline).map((r) => r.task_id);
  if (expiring.length > 0) {
    throw new ApiError('InputError', `taskId ${d.taskId} depends on tasks that expire before its deadline: ${listed(expiring)}`, {
      expiringTaskDependencies: expiring,
    });
  }
  const satisfied = new Set<string>();
  for (const r of found.rows) {
    const ok = d.requires === 'all-completed' ? r.state === 'completed' : r.state !== null && isResolvedState(r.state);
    if (ok) satisfied.add(r.task_id);
  }
  return satisfied;
}

/** Up to 20 ids for a message; the details carry them all. */
function listed(ids: string[]): string {
  return ids.length <= 20 ? ids.join(', ') : `${ids.slice(0, 20).join(', ')} and ${ids.length - 20} more`;
}

/** Inserts the edges; returns whether the task is blocked (any unsatisfied edge). */
export async function insertDependencies(trx: Trx, d: DependencyInput, satisfied: Set<string>): Promise<boolean> {
  const deps = [...new Set(d.dependencies)];
  if (deps.length === 0) return false;
  for (let i = 0; i < deps.length; i += 1000) {
    await trx
      .insertInto('task_dependencies')
      .values(
        deps.slice(i, i + 1000).map((required) => ({
          required_task_id: required,
          dependent_task_id: d.taskId,
          requires: d.requires,
          satisfied: satisfied.has(required),
          expires: d.expires,
        })),
      )
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
  return deps.some((id) => !satisfied.has(id));
}
