// Statements sent several to a message (db/pipeline.ts): their values travel as literals of an
// EXECUTE, so every kind of value the batches pass must arrive as it would as a parameter; each
// text is prepared once per connection, and again after its table changed shape; a statement that
// fails stops the message and leaves the connection usable.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { Db } from '../services/queue/src/db/database.js';
import { pipeline } from '../services/queue/src/db/pipeline.js';
import { startTestQueue, type TestQueue } from './harness/service.js';

describe('pipelined statements', () => {
  let q: TestQueue;
  before(async () => {
    q = await startTestQueue({ enableLoops: false });
  });
  after(async () => {
    await q?.stop();
  });
  const onOneConnection = <T>(fn: (db: Db) => Promise<T>) => q.service.ctx.batchDb.connection().execute((conn) => fn(conn as Db));

  const tricky = `it's \\' a '' trap \\\\ "x" {a,b} \u00e9 $$ $q$ NULL`;
  const values = {
    text: tricky,
    texts: [tricky, '', 'NULL', null, 'a,b', '{}', '"', '\\'],
    ints: [1, -2, 0],
    json: { note: tricky, n: [1, 2.5, null], nested: { ok: true } },
    when: new Date('2026-11-23T10:00:00.123Z'),
    yes: true,
    none: null,
  };
  const selectAll = () => sql<Record<string, unknown>>`SELECT ${values.text}::text AS text, ${values.texts}::text[] AS texts,
    ${values.ints}::int[] AS ints, ${JSON.stringify(values.json)}::jsonb AS json, ${values.when}::timestamptz AS when,
    ${values.yes}::boolean AS yes, ${values.none}::text AS none`;

  it('passes every kind of value as a parameter would, and answers with the chosen statement', async () => {
    const asParameters = (await selectAll().execute(q.service.ctx.batchDb)).rows[0];
    const piped = await onOneConnection(async (db) =>
      (await db.executeQuery(pipeline<Record<string, unknown>>(db, [sql`SELECT 1 AS first`, selectAll(), sql`SELECT 3 AS last`], 1))).rows[0]);
    assert.deepEqual(piped, asParameters);
    assert.deepEqual(piped, { ...values, json: values.json });
  });

  it('passes them intact whatever standard_conforming_strings says (a database set to the pre-9.1 default)', async () => {
    for (const setting of ['off', 'on']) {
      const piped = await onOneConnection(async (db) => {
        await sql.raw(`SET standard_conforming_strings = ${setting}`).execute(db);
        try {
          return (await db.executeQuery(pipeline<Record<string, unknown>>(db, [selectAll()]))).rows[0];
        } finally {
          await sql`RESET standard_conforming_strings`.execute(db);
        }
      });
      assert.deepEqual(piped, values, `standard_conforming_strings=${setting}`);
    }
  });

  it('prepares a text once per connection', async () => {
    const names = await onOneConnection(async (db) => {
      for (let i = 0; i < 3; i++) await db.executeQuery(pipeline(db, [sql`SELECT ${i}::int AS once_per_connection`]));
      const { rows } = await sql<{ name: string }>`SELECT name FROM pg_prepared_statements
        WHERE name LIKE 'conveyor_pipelined_%' AND statement LIKE '%once_per_connection%'`.execute(db);
      return rows.map((r) => r.name);
    });
    assert.equal(names.length, 1);
  });

  it('stops at a failing statement and leaves the connection usable', async () => {
    await onOneConnection(async (db) => {
      const fresh = () => sql<{ n: number }>`SELECT ${'x'}::text AS s, 41 + ${1}::int AS n`;
      await assert.rejects(db.executeQuery(pipeline(db, [fresh(), sql`SELECT 1 / 0`, sql`CREATE TABLE never_made (x int)`])), /division by zero/);
      const { rows } = await db.executeQuery(pipeline<{ n: number }>(db, [fresh()]));
      assert.equal(rows[0]!.n, 42);
      const made = await sql<{ t: string | null }>`SELECT to_regclass('never_made')::text AS t`.execute(db);
      assert.equal(made.rows[0]!.t, null);
    });
  });

  it('prepares afresh once a table it reads has changed its row type (a migration by another replica)', async () => {
    await onOneConnection(async (db) => {
      await sql`CREATE TABLE piped_shape (a int)`.execute(db);
      await sql`INSERT INTO piped_shape VALUES (1)`.execute(db);
      const read = () => db.executeQuery(pipeline<Record<string, unknown>>(db, [sql`SELECT * FROM piped_shape WHERE a = ${1}::int`]));
      assert.deepEqual((await read()).rows, [{ a: 1 }]);
      await sql`ALTER TABLE piped_shape ADD COLUMN b int DEFAULT 2`.execute(db);
      // refused once (the batch then runs its calls again, one by one), then prepared anew
      await assert.rejects(read(), /cached plan must not change result type/);
      assert.deepEqual((await read()).rows, [{ a: 1, b: 2 }]);
    });
  });
});

