// conveyor_abort(code, message): raises an error from inside a statement. A batch that is one
// statement (its own implicit transaction) has no later point at which the application could roll
// back, so a condition found midway — a group taken by another scheduler between the statement's
// snapshot and its upsert — must undo the statement itself; the caller recognises the SQLSTATE.
// Returns boolean so it can stand in a CASE of a SELECT list. Never changes once released.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE FUNCTION conveyor_abort(code text, message text) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message;
    END $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP FUNCTION conveyor_abort(text, text)`.execute(db);
}
