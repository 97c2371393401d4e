// Records the text of every SQL statement node-postgres sends from this process (one entry per
// round trip), for the count-queries scripts.
import pg from 'pg';

export function logStatements(): string[] {
  const log: string[] = [];
  const original = pg.Client.prototype.query as (...a: unknown[]) => unknown;
  (pg.Client.prototype as unknown as { query: unknown }).query = function (this: pg.Client, ...args: unknown[]) {
    const a = args[0] as string | { text?: string };
    log.push((typeof a === 'string' ? a : a?.text ?? '?').replace(/\s+/g, ' ').slice(0, 140));
    return original.apply(this, args);
  };
  return log;
}
