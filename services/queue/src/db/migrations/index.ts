// Every migration, in order. Kysely's migrator takes an advisory lock, so replicas that start at
// the same time apply each migration exactly once.
import type { Migration } from 'kysely';
import * as m0001 from './0001-initial.js';
import * as m0200 from './0200-task-queue-views.js';
import * as m0400 from './0400-resolvers.js';
import * as m0401 from './0401-dependency-ranges.js';
import * as m0500 from './0500-artifact-blobs.js';
import * as m0600 from './0600-scheduler.js';
import * as m0700 from './0700-statement-abort.js';
import * as m0701 from './0701-pipeline-expiry.js';
import * as m0702 from './0702-outbox-body-json.js';
import * as m0703 from './0703-drop-ever-resolved.js';

export const migrations: Record<string, Migration> = {
  '0001-initial': m0001,
  '0200-task-queue-views': m0200,
  '0400-resolvers': m0400,
  '0401-dependency-ranges': m0401,
  '0500-artifact-blobs': m0500,
  '0600-scheduler': m0600,
  '0700-statement-abort': m0700,
  '0701-pipeline-expiry': m0701,
  '0702-outbox-body-json': m0702,
  '0703-drop-ever-resolved': m0703,
};
