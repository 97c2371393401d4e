// Several statements in one message to PostgreSQL, each still a prepared statement.
//
// pg waits for each statement's answer before it sends the next, and on this kind of machine
// every round trip costs the service's one thread far more than its bytes: the write wakes the
// PostgreSQL backend, which often runs the statement on the service's own core while the service
// waits (the lifecycle bench's profile shows ~0.3 ms of the event loop per statement sent). Only
// the simple protocol carries several statements in one message, and it has no parameters; so
// each statement with parameters is prepared once per connection with SQL PREPARE (sent in the
// same message the first time) and run as EXECUTE with its values written as literals. The plan
// is kept as for any prepared statement of the pool; only the short EXECUTE is parsed each time.
//
// A pipeline goes through kysely as one statement whose text is `pipelineText` and whose one
// parameter is the Pipeline; the pool's client (database.ts) recognises it and runs runPipeline.
import { CompiledQuery, type RawBuilder } from 'kysely';
import type pg from 'pg';
import type { Db, Trx } from './database.js';

export const pipelineText = '/* conveyor pipeline */ $1';

export interface Pipeline {
  statements: Array<Pick<CompiledQuery, 'sql' | 'parameters'>>;
  /** Whose rows the pipeline answers with (an index into statements). */
  returning: number;
}

export type Statement = RawBuilder<unknown> | CompiledQuery<unknown>;

const compiled = (db: Db | Trx, s: Statement): CompiledQuery => ('compile' in s ? s.compile(db) : s);

/**
 * Sends `statements` in one message, in order, on the connection of `db` (a transaction's or a
 * single connection's kysely instance), and answers with the rows of `statements[returning]`
 * (default: the last). A statement that fails stops the rest, as in any multi-statement message.
 */
export function pipeline<R = unknown>(db: Db | Trx, statements: Statement[], returning = statements.length - 1): CompiledQuery<R> {
  const p: Pipeline = { statements: statements.map((s) => compiled(db, s)), returning };
  return CompiledQuery.raw(pipelineText, [p]) as CompiledQuery<R>;
}

/**
 * A value as SQL text, typed by the prepared statement's parameter it is passed to.
 *
 * Read the same whatever `standard_conforming_strings` says: text holding a backslash is written
 * as an escape string (E'...', backslashes doubled), the form pg's escapeLiteral writes. That
 * function builds its answer a character at a time (~80 µs for a 6 KB JSON value, here 0.5 µs).
 */
export function literal(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  const text = textOf(value);
  const quoted = text.replaceAll("'", "''");
  return text.includes('\\') ? ` E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

function textOf(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return arrayText(value);
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) throw new Error('pipeline: bytea parameters are not supported; run the statement on its own');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

// An array literal: every element quoted, with `"` and `\` escaped (as array_in reads them).
function arrayText(values: unknown[]): string {
  return `{${values.map((v) => (v === null || v === undefined ? 'NULL' : Array.isArray(v) ? arrayText(v) : `"${textOf(v).replace(/[\\"]/g, '\\$&')}"`)).join(',')}}`;
}

/** The names a connection has prepared with SQL PREPARE, by statement text. */
const preparedOn = new WeakMap<pg.Client, { names: Map<string, string>; next: number }>();

// A connection keeps at most this many pipelined statements (the callers use a handful of fixed
// texts); past it the oldest is deallocated in the same message.
const maxPrepared = 64;

type QueryText = (text: string) => Promise<pg.QueryResult | pg.QueryResult[]>;

/** Runs a Pipeline on `client` (through `query`, the client's own simple-protocol query). */
export async function runPipeline(client: pg.Client, query: QueryText, p: Pipeline): Promise<pg.QueryResult> {
  let state = preparedOn.get(client);
  if (!state) preparedOn.set(client, (state = { names: new Map(), next: 0 }));
  const parts: string[] = [];
  const resultOf: number[] = [];
  const preparedNow: string[] = [];
  for (const s of p.statements) {
    if (s.parameters.length === 0) {
      parts.push(s.sql);
    } else {
      let name = state.names.get(s.sql);
      if (name === undefined) {
        if (state.names.size >= maxPrepared) {
          const [oldText, oldName] = state.names.entries().next().value as [string, string];
          state.names.delete(oldText);
          parts.push(`DEALLOCATE ${oldName}`);
        }
        name = `conveyor_pipelined_${state.next++}`;
        state.names.set(s.sql, name);
        preparedNow.push(s.sql);
        parts.push(`PREPARE ${name} AS ${s.sql}`);
      }
      parts.push(`EXECUTE ${name}(${s.parameters.map(literal).join(', ')})`);
    }
    resultOf.push(parts.length - 1);
  }
  let results: pg.QueryResult | pg.QueryResult[];
  try {
    results = await query(parts.join(';\n'));
  } catch (err) {
    // The message stopped at the failing statement: a PREPARE after it never ran. Forget what this
    // message prepared; a later one prepares under a new name (one that did run is left unused).
    for (const text of preparedNow) state.names.delete(text);
    // A migration by another replica changed a table under a prepared `SELECT t.*`: PostgreSQL
    // refuses that statement from now on, so every text is prepared afresh (as database.ts does
    // for the protocol-level ones).
    if ((err as { code?: string }).code === '0A000') state.names.clear();
    throw err;
  }
  const all = Array.isArray(results) ? results : [results];
  return all[resultOf[p.returning]!]!;
}
