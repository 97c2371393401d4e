// Keyset paging shared by every list endpoint: `limit` (1..1000, default 1000) and an opaque
// `continuationToken` (base64url JSON of the last row's sort key). A token that does not decode is
// a 400, not a 500.
import { ApiError } from './errors.js';

export const maxLimit = 1000;

export function pageLimit(query: { limit?: string }, max = maxLimit): number {
  if (query.limit === undefined) return max;
  const n = Number(query.limit);
  if (!Number.isInteger(n) || n < 1) throw new ApiError('InvalidRequestArguments', 'limit must be a positive integer');
  return Math.min(n, max);
}

export function encodeToken(key: unknown[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodeToken(token: string | undefined): unknown[] | undefined {
  if (token === undefined) return undefined;
  try {
    const key = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (Array.isArray(key)) return key;
  } catch {
    // fall through
  }
  throw new ApiError('InvalidRequestArguments', 'continuationToken is not valid; pass the token from the previous page unchanged');
}

/**
 * Given rows fetched with LIMIT limit+1, returns the page and the token for the next one.
 */
export function page<T>(rows: T[], limit: number, keyOf: (row: T) => unknown[]): { rows: T[]; continuationToken?: string } {
  if (rows.length <= limit) return { rows };
  const pageRows = rows.slice(0, limit);
  return { rows: pageRows, continuationToken: encodeToken(keyOf(pageRows[pageRows.length - 1]!)) };
}
