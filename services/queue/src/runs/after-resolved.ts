// What follows when a task reaches a resolved state (and no retry run was made): its group may
// become resolved, and its dependents may become unblocked.
import { sql } from 'kysely';
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import { resolveDependents } from '../deps/resolve.js';
import { groupMessage, type OutboxMessage } from '../outbox/messages.js';
import type { TaskWithRuns } from '../tasks/status.js';

export async function afterResolved(ctx: Ctx, trx: Trx, t: TaskWithRuns): Promise<OutboxMessage[]> {
  const messages: OutboxMessage[] = [];
  // dependents (task rows) before the group row: the lock order of runs/README.md, and the hot
  // group row of a big group stays locked for the least time
  messages.push(...(await resolveDependents(ctx, trx, t)));
  messages.push(...(await changeUnresolved(trx, t.task.task_group_id, -1)));
  return messages;
}

/**
 * Adjusts the group's count of unresolved tasks. The transaction that brings it to zero announces
 * task-group-resolved — exactly once per such transition, and never while a retry run is pending
 * (a retried task never left the unresolved set).
 */
export async function changeUnresolved(trx: Trx, taskGroupId: string, delta: 1 | -1): Promise<OutboxMessage[]> {
  const group = await trx
    .updateTable('task_groups')
    .set({ unresolved: sql`unresolved + ${delta}` })
    .where('task_group_id', '=', taskGroupId)
    .returning(['task_group_id', 'scheduler_id', 'expires', 'sealed', 'unresolved'])
    .executeTakeFirst();
  if (!group || delta > 0) return [];
  return groupResolvedMessages([group]);
}

export interface GroupCount {
  task_group_id: string;
  scheduler_id: string;
  expires: Date | string;
  sealed: Date | string | null;
  /** After the change. */
  unresolved: number;
}

/** task-group-resolved for each group that a decrement has just brought to zero unresolved. */
export function groupResolvedMessages(groups: GroupCount[]): OutboxMessage[] {
  return groups
    .filter((g) => g.unresolved === 0)
    .map((g) => groupMessage('taskGroupResolved', { taskGroupId: g.task_group_id, schedulerId: g.scheduler_id, expires: g.expires, sealed: g.sealed }));
}
