// outbox.body as json, not jsonb: the body is written once and read back only as text (the relay
// and the event stream send it as it is), so jsonb's parsed form bought nothing and cost every
// write a parse that sorts each object's keys: building the messages in SQL with jsonb was ~11 %
// of PostgreSQL's CPU in the lifecycle bench. A json body also keeps its keys in the order they
// were written. Replicas still writing jsonb keep working (jsonb → json is an assignment cast).
// Never changes once released.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE outbox ALTER COLUMN body TYPE json USING body::json`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE outbox ALTER COLUMN body TYPE jsonb USING body::jsonb`.execute(db);
}
