// Continuation tokens of the worker and task-queue listings. paging.ts decodes any JSON array; the
// SQL needs the exact shape (a text key, a microsecond count), so a token of another shape is the
// same 400 as an undecodable one instead of a database error.
import { sql, type RawBuilder } from 'kysely';
import { ApiError } from '../http/errors.js';
import { decodeToken } from '../http/paging.js';

type Part = 'text' | 'micros';

const microsPattern = /^[0-9]{1,17}$/;

export function tokenKey(token: string | undefined, shape: Part[]): string[] | undefined {
  const key = decodeToken(token);
  if (key === undefined) return undefined;
  const ok =
    key.length === shape.length &&
    // PostgreSQL text cannot hold NUL: such a key would fail in the database, not here
    key.every((v, i) => typeof v === 'string' && (shape[i] === 'text' ? v.length <= 1024 && !v.includes('\0') : microsPattern.test(v)));
  if (!ok) {
    throw new ApiError('InvalidRequestArguments', 'continuationToken is not valid; pass the token from the previous page unchanged');
  }
  return key as string[];
}

/**
 * A timestamp column as whole microseconds since the epoch, as text. Tokens carry this instead of
 * an ISO string: ISO strings stop at milliseconds, and `pending.inserted` (set by now()) has
 * microseconds, so a millisecond key would repeat rows that share the millisecond.
 */
export function micros(column: string): RawBuilder<string> {
  return sql<string>`(extract(epoch from ${sql.ref(column)}) * 1000000)::bigint::text`;
}

/** The timestamp a `micros` value stands for, exactly (integer arithmetic, no float rounding). */
export function fromMicros(value: string): RawBuilder<Date> {
  return sql<Date>`(timestamptz 'epoch' + ${value}::bigint * interval '1 microsecond')`;
}
