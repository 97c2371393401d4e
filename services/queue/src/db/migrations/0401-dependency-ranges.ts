// Lets one resolved task's dependents be cut into ranges that several loop workers (and replicas)
// handle at once. Migrations never import application code and never change once released.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- last dependent of this row's range (inclusive); NULL: to the end
    ALTER TABLE resolved_tasks_queue ADD COLUMN until_dependent text;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE resolved_tasks_queue DROP COLUMN until_dependent;`.execute(db);
}
