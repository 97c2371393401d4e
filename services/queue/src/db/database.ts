// The kysely instance over a pg pool, and the migrator.
import { Kysely, Migrator, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import { migrations } from './migrations/index.js';
import { pipelineText, runPipeline, type Pipeline } from './pipeline.js';
import type { Database } from './tables.js';

export type Db = Kysely<Database>;
export type Trx = Transaction<Database>;

// Parameterised statements run as named (prepared) statements: PostgreSQL parses and plans each
// text once per connection instead of on every call. Measured with bench/lifecycle: a trivial
// parameterised SELECT goes from 16k to 30k/s on 2 cores, and PostgreSQL's share of the lifecycle
// drops accordingly. Bounded: long IN-lists and texts beyond the first few hundred stay unnamed,
// so neither side accumulates statements without limit.
const maxNamedStatements = 300;
const maxNamedParameters = 64;
const statementNames = new Map<string, string>();
// A migration by another replica can change a table's row type under a prepared `SELECT *`;
// PostgreSQL then refuses the old plan once, and from then on every text gets a fresh name.
let generation = 0;

function statementName(text: string, parameterCount: number): string | undefined {
  if (parameterCount === 0 || parameterCount > maxNamedParameters) return undefined;
  let name = statementNames.get(text);
  if (name === undefined) {
    if (statementNames.size >= maxNamedStatements) return undefined;
    name = `conveyor_${statementNames.size}`;
    statementNames.set(text, name);
  }
  return `${name}_${generation}`;
}

class PreparingClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    // pg emits 'error' on a client whose connection dies (a PostgreSQL restart, a terminated
    // backend). The pool listens only while the client sits idle; while it is checked out nobody
    // does, and an unheard 'error' event would end the process. The statement in flight fails
    // with the same error (its caller answers 503: http/server.ts), and the pool drops the client
    // when it is released.
    this.on('error', () => {});
  }

  // kysely calls query(text, values) and awaits the promise; every other form passes through.
  override query(...args: unknown[]): any {
    const [text, values, callback] = args;
    if (text === pipelineText && Array.isArray(values) && values.length === 1) {
      return runPipeline(this, (t) => super.query(t) as Promise<pg.QueryResult>, values[0] as Pipeline);
    }
    if (typeof text === 'string' && Array.isArray(values) && callback === undefined) {
      const name = statementName(text, values.length);
      if (name !== undefined) {
        return (super.query({ name, text, values }) as Promise<pg.QueryResult>).catch((err: { code?: string; message?: string }) => {
          if (err?.code === '0A000' && /cached plan must not change result type/.test(err.message ?? '')) generation += 1;
          throw err;
        });
      }
    }
    return (super.query as (...a: unknown[]) => unknown)(...args);
  }
}

/** How often a batch connection drops its generic plans (see `settings`). */
const replanEveryMs = 5_000;

class ReplanningClient extends PreparingClient {
  private plannedAt = Date.now();

  override query(...args: unknown[]): any {
    const now = Date.now();
    if (now - this.plannedAt >= replanEveryMs) {
      this.plannedAt = now;
      // queued ahead of this statement on the same connection; the prepared statements stay, only
      // their plans go. Inside a failed transaction it fails alone, and the next period retries.
      (super.query('DISCARD PLANS') as Promise<unknown>).catch(() => {});
    }
    return super.query(...args);
  }
}

/**
 * How a pool's connections plan their statements.
 *
 * - `general`: jit=off — every statement here is short; a plan whose row estimates run high (the
 *   batched claim's per-queue LIMIT over a big backlog) would otherwise spend ~100 ms compiling
 *   itself on every execution, for a statement that runs in ~1 ms. plan_cache_mode=
 *   force_custom_plan — a prepared statement otherwise settles on a generic plan after five runs,
 *   and on a new install those runs happen while the tables are nearly empty: the plan then scans
 *   whole tables for the life of the connection as they grow. Planning each execution keeps the
 *   saving of parsing once. bench/worker, backlog of 1,500: the SDK no-op drain went 223–315 →
 *   396–444 tasks/s (PostgreSQL CPU per task 3.4 → 1.4 ms).
 * - `batch`: the shared transactions (db/batcher.ts), a handful of statements run thousands of
 *   times a second. Planning them each time was a third of PostgreSQL's CPU in the lifecycle bench,
 *   so they keep a generic plan per connection, made afresh every 5 s: a plan made while a table
 *   was nearly empty picks index paths that scan a whole index (tasks by task_id through
 *   tasks_group, the running runs through their partial index), and the planner sizes a table
 *   from its current file size even before ANALYZE, so the next plan follows the growth.
 *   Sequential and bitmap scans are off, so even a plan made on empty tables walks the claim index
 *   in claim order rather than sorting a queue's whole backlog. Lifecycle bench: PostgreSQL CPU per
 *   lifecycle −27 %. (Statements sent in a pipeline carry their values as literals written to
 *   read the same whatever the database's standard_conforming_strings: db/pipeline.ts.)
 */
export type PoolUse = 'general' | 'batch';

const settings: Record<PoolUse, string> = {
  general: '-c jit=off -c plan_cache_mode=force_custom_plan',
  batch: '-c jit=off -c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c enable_bitmapscan=off',
};

/**
 * Whether `err` says the database could not be reached or dropped the connection (rather than
 * refusing a statement): the request may succeed if tried again.
 */
export function databaseUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (!e || typeof e !== 'object') return false;
  const code = typeof e.code === 'string' ? e.code : '';
  // 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now
  if (/^(08...|57P0[123])$/.test(code)) return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN'].includes(code)) return true;
  return typeof e.message === 'string' && /^Connection terminated|^timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable/.test(e.message);
}

// bigint columns (outbox ids, pending seq) stay strings; counts come back as numbers via ::int casts.
export function createDb(connectionString: string, max = 20, use: PoolUse = 'general'): { db: Db; pool: pg.Pool } {
  const Client = use === 'batch' ? ReplanningClient : PreparingClient;
  const pool = new pg.Pool({ connectionString, max, Client, options: settings[use] });
  // An idle client erroring (e.g. the server restarting) must not crash the process.
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, pool };
}

/** The database could not be used at start; the message says where and why (no stack needed). */
export class DatabaseUnreachable extends Error {
  override name = 'DatabaseUnreachable';
}

/** host:port/database of a connection string, without its credentials, for messages. */
function where(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    return `${decodeURIComponent(u.hostname) || 'localhost'}:${u.port || 5432}${u.pathname}`;
  } catch {
    return 'in DATABASE_URL';
  }
}

/**
 * Resolves once the database answers, waiting up to `seconds` while it is unreachable: started
 * together with the service (docker compose, a reboot), PostgreSQL may accept connections later.
 * Anything else — a wrong password, a missing database — fails at once.
 */
export async function waitForDatabase(
  db: Db,
  connectionString: string,
  seconds: number,
  log: { warn(obj: object, msg: string): void },
): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  let delay = 100;
  let warned = false;
  for (;;) {
    try {
      await sql`SELECT 1`.execute(db);
      return;
    } catch (err) {
      const reason = (err as Error).message ?? String(err);
      if (!databaseUnavailable(err)) throw new DatabaseUnreachable(`cannot use the database ${where(connectionString)}: ${reason}`);
      if (Date.now() + delay > deadline) {
        throw new DatabaseUnreachable(`the database ${where(connectionString)} did not accept connections within ${seconds} s (DB_WAIT_SEC): ${reason}`);
      }
      if (!warned) {
        warned = true;
        log.warn({ reason }, `waiting up to ${seconds} s for the database ${where(connectionString)}`);
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 2000);
    }
  }
}

/** What every process that opens the database does first: wait for it (DB_WAIT_SEC), then migrate. */
export async function openDatabase(
  db: Db,
  config: { databaseUrl?: string; dbWaitSec: number },
  log: { warn(obj: object, msg: string): void },
): Promise<void> {
  await waitForDatabase(db, config.databaseUrl!, config.dbWaitSec, log);
  await migrate(db as never);
}

export async function migrate(db: Kysely<unknown>): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    // each engineer numbers migrations in an own block, so a database that already ran 0500 must
    // still accept a later-merged 0200; the default would refuse to start ("corrupted migrations")
    allowUnorderedMigrations: true,
  });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (failed) throw new Error(`migration ${failed.migrationName} failed: ${String(error)}`);
  if (error) throw error;
}
