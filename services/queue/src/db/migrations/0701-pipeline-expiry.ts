// Resolved pipelines, oldest first: the expiration loop deletes a resolved pipeline once the task
// groups of all its stages are gone (resolvers/expiration.ts) and walks them in this order.
// Never changes once released.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX scheduler_pipelines_resolved ON scheduler_pipelines (resolved) WHERE resolved IS NOT NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX scheduler_pipelines_resolved`.execute(db);
}
