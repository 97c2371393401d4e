// The transaction of a shared batch (db/batcher.ts), with its BEGIN and COMMIT each riding along
// with statements (db/pipeline.ts): BEGIN with the row locks the batch opens with and the batch's
// first read, COMMIT with its last writes (typically the outbox). Round trips fewer than kysely's
// transaction(), whose BEGIN and COMMIT are messages of their own, and than one per statement.
import { CompiledQuery, sql } from 'kysely';
import type { Db, Trx } from './database.js';
import { pipeline, type Statement } from './pipeline.js';
import { template } from './template.js';

export interface BatchResult<T> {
  value: T;
  /** Sent with COMMIT, in order. */
  last?: Statement[];
}

const begin = CompiledQuery.raw('BEGIN');
const commit = CompiledQuery.raw('COMMIT');
const lockTasksStatement = template<{ ids: string[] }>(
  ({ ids }) => sql`SELECT 1 FROM tasks WHERE task_id = ANY(${ids}::text[]) ORDER BY task_id FOR UPDATE`,
);

/**
 * Runs `fn` in a transaction on one connection of `db`, after locking the rows of `lockTasks`
 * that exist (FOR UPDATE, in task_id order: the lock order of runs/README.md) and running `first`
 * (in the same message); `fn` gets first's rows. Commits after `fn`'s `last` statements, rolls
 * back when anything throws.
 */
export async function batchTransaction<T, R = unknown>(
  db: Db,
  lockTasks: string[],
  first: CompiledQuery<R> | undefined,
  fn: (trx: Trx, firstRows: R[]) => Promise<BatchResult<T>>,
): Promise<T> {
  return db.connection().execute(async (conn) => {
    const opening: Statement[] = [begin];
    if (lockTasks.length > 0) opening.push(lockTasksStatement({ ids: lockTasks }));
    if (first) opening.push(first);
    // the kysely instance bound to this one connection serves as the transaction
    const trx = conn as unknown as Trx;
    try {
      // inside the try: a statement after BEGIN that fails leaves a transaction to roll back
      const { rows } = await conn.executeQuery<R>(pipeline(trx, opening));
      const { value, last = [] } = await fn(trx, first ? rows : []);
      await conn.executeQuery(pipeline(trx, [...last, commit]));
      return value;
    } catch (err) {
      await sql`ROLLBACK`.execute(conn).catch(() => {});
      throw err;
    }
  });
}
