// A batch transaction that opens with row locks on tasks, its BEGIN and the lock sent as one
// message: one round trip where kysely's transaction() takes two. A parameterised statement cannot
// share a message with BEGIN (only the simple protocol carries several statements), so the ids go
// into the text as literals — they are slugids, checked here, and the statement is trivial to plan.
import { sql } from 'kysely';
import type { Db, Trx } from './database.js';

const slugid = /^[A-Za-z0-9_-]{22}$/;

/**
 * Runs `fn` in a transaction on one connection of `db`, after locking the rows of `taskIds` that
 * exist (FOR UPDATE, in task_id order: the lock order of runs/README.md). Commits when `fn`
 * resolves, rolls back when it throws.
 */
export async function withTasksLocked<T>(db: Db, taskIds: string[], fn: (trx: Trx) => Promise<T>): Promise<T> {
  const bad = taskIds.find((id) => !slugid.test(id));
  if (bad !== undefined) throw new Error(`withTasksLocked: ${JSON.stringify(bad)} is not a taskId`);
  return db.connection().execute(async (conn) => {
    const ids = sql.join(taskIds.map((id) => sql.lit(id)));
    await sql`BEGIN; SELECT 1 FROM tasks WHERE task_id IN (${ids}) ORDER BY task_id FOR UPDATE`.execute(conn);
    let result: T;
    try {
      // the kysely instance bound to this one connection serves as the transaction
      result = await fn(conn as unknown as Trx);
    } catch (err) {
      await sql`ROLLBACK`.execute(conn).catch(() => {});
      throw err;
    }
    await sql`COMMIT`.execute(conn);
    return result;
  });
}
