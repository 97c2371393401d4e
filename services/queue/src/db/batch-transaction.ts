// The transaction of a shared batch (db/batcher.ts), with its BEGIN and COMMIT each riding along
// with a statement: BEGIN with the row locks the batch opens with, COMMIT with the last statement
// (typically its outbox write). Two round trips fewer than kysely's transaction(), whose BEGIN and
// COMMIT are messages of their own; on this kind of machine a round trip costs each side ~100 µs
// of CPU besides its latency.
//
// Several statements can share one message only in the simple protocol, which has no parameters,
// so these two statements carry their values as literals: the lock's taskIds (slugids, checked
// here) and the last statement's values (kysely's sql.lit doubles quotes; the batch pool runs
// with standard_conforming_strings=on, so a backslash is just a character). Both are planned on
// each run; the statements in between stay prepared.
import { sql, type RawBuilder } from 'kysely';
import type { Db, Trx } from './database.js';

/** How a statement carries a value: as a parameter, or written into its text (sql.lit). */
export type Embedding = 'parameter' | 'literal';

export function embedded(value: string | number | Date, how: Embedding): RawBuilder<unknown> {
  return how === 'literal' ? sql.lit(value) : sql`${value}`;
}

export interface BatchResult<T> {
  value: T;
  /** Sent with COMMIT; its values embedded as literals. */
  last?: RawBuilder<unknown>;
}

const slugid = /^[A-Za-z0-9_-]{22}$/;

/**
 * Runs `fn` in a transaction on one connection of `db`, after locking the rows of `lockTasks`
 * that exist (FOR UPDATE, in task_id order: the lock order of runs/README.md). Commits after
 * `fn`'s `last` statement, rolls back when anything throws.
 */
export async function batchTransaction<T>(db: Db, lockTasks: string[], fn: (trx: Trx) => Promise<BatchResult<T>>): Promise<T> {
  const bad = lockTasks.find((id) => !slugid.test(id));
  if (bad !== undefined) throw new Error(`batchTransaction: ${JSON.stringify(bad)} is not a taskId`);
  return db.connection().execute(async (conn) => {
    const ids = sql.join(lockTasks.map((id) => sql.lit(id)));
    await (lockTasks.length > 0 ? sql`BEGIN; SELECT 1 FROM tasks WHERE task_id IN (${ids}) ORDER BY task_id FOR UPDATE` : sql`BEGIN`).execute(conn);
    try {
      // the kysely instance bound to this one connection serves as the transaction
      const { value, last } = await fn(conn as unknown as Trx);
      const closing = last?.compile(conn);
      if (closing && closing.parameters.length > 0) throw new Error('batchTransaction: the last statement must embed its values as literals');
      await sql.raw(closing ? `${closing.sql}; COMMIT` : 'COMMIT').execute(conn);
      return value;
    } catch (err) {
      await sql`ROLLBACK`.execute(conn).catch(() => {});
      throw err;
    }
  });
}
