// The common createArtifact — a new s3 artifact of a running run, a worker about to upload its log —
// in one statement instead of a transaction under the task lock (8 round trips → 1; bench/worker).
//
// Why that is as safe as the lock: the run is taken FOR SHARE, so a resolution of the run (which
// updates it under the task lock) either committed before — READ COMMITTED re-reads the row at its
// latest version and the state test fails — or waits until this insert has committed; the run
// cannot resolve half-way, as with the task lock. The task row is read unlocked for `expires`,
// which never changes. A new s3 artifact is not present and has no artifact-created to order
// against other messages of the task, so nothing else needed the task lock. It locks runs and then
// inserts into artifacts; nothing locks artifacts and then runs, so no deadlock. (No foreign key
// leads from artifacts to runs or tasks, so the insert itself takes no other lock.)
//
// Anything else — the artifact exists (a repeat or a conflict), the run is not running (including
// the exception grace period), no such task or run, an expiry beyond the task's — inserts nothing,
// and the caller takes the locked path, which has every check and every error message.
import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import type { ArtifactRow } from './rows.js';

export interface FreshS3 {
  taskId: string;
  runId: number;
  name: string;
  contentType: string;
  details: Record<string, unknown>;
  expires: Date;
}

/** The new artifact's row, or undefined when this is not the common case (see above). */
export async function insertFreshS3(db: Db, a: FreshS3): Promise<ArtifactRow | undefined> {
  const { rows } = await sql<ArtifactRow>`
    WITH run AS (
      SELECT r.task_id FROM runs r JOIN tasks t USING (task_id)
      WHERE r.task_id = ${a.taskId} AND r.run_id = ${a.runId} AND r.state = 'running'
        AND r.worker_group IS NOT NULL AND r.worker_id IS NOT NULL AND t.expires >= ${a.expires}
      FOR SHARE OF r
    )
    INSERT INTO artifacts (task_id, run_id, name, storage_type, content_type, details, present, expires)
    SELECT task_id, ${a.runId}::int, ${a.name}::text, 's3', ${a.contentType}::text, ${JSON.stringify(a.details)}::jsonb, false, ${a.expires}::timestamptz
    FROM run
    ON CONFLICT DO NOTHING
    RETURNING *`.execute(db);
  return rows[0];
}
