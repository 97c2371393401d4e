// Unblocking dependents when a task resolves. (Issue #4 extends this with batching.)
import type { Ctx } from '../context.js';
import type { Trx } from '../db/database.js';
import type { OutboxMessage } from '../outbox/messages.js';
import type { TaskWithRuns } from '../tasks/status.js';

export async function resolveDependents(_ctx: Ctx, _trx: Trx, _t: TaskWithRuns): Promise<OutboxMessage[]> {
  return [];
}
