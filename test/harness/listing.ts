// Helpers for the listing endpoints' tests: walk every page, check a body against its response
// schema, expect a Taskcluster error, run a step at another time of the service's clock.
import assert from 'node:assert/strict';
import { validate } from '../../services/queue/src/http/validate.js';
import type { TestQueue } from './service.js';

/** Calls `fetch` page by page (limit + continuationToken) and returns the pages' items and token count. */
export async function allPages<T>(
  fetch: (query: { limit: number; continuationToken?: string }) => Promise<Record<string, unknown>>,
  key: string,
  limit: number,
): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let continuationToken: string | undefined;
  let pages = 0;
  do {
    const res = await fetch(continuationToken ? { limit, continuationToken } : { limit });
    const got = res[key] as T[];
    assert.ok(got.length <= limit, `page of ${got.length} items, limit ${limit}`);
    items.push(...got);
    pages++;
    continuationToken = res.continuationToken as string | undefined;
    assert.ok(pages < 1000, 'paging does not end');
  } while (continuationToken);
  return { items, pages };
}

/** Asserts the body satisfies the endpoint's output schema (the server does not check its replies). */
export function assertSchema(schema: string, body: unknown): void {
  assert.doesNotThrow(() => validate(schema, structuredClone(body), 'response'), `response does not match ${schema}`);
}

/** Expects a taskcluster-client call to fail with this status and code; returns the error. */
export async function expectError(call: Promise<unknown>, status: number, code: string): Promise<any> {
  const err: any = await call.then(
    (value) => assert.fail(`expected ${status} ${code}, got success: ${JSON.stringify(value).slice(0, 300)}`),
    (e) => e,
  );
  assert.equal(err.statusCode, status, `expected ${status} ${code}, got ${err.statusCode} ${err.code}: ${err.message}`);
  assert.equal(err.code, code, err.message);
  return err;
}

/** Tokens that decode but that no listing takes: a wrong shape, a text PostgreSQL cannot store. */
export const wrongShapeToken = Buffer.from(JSON.stringify([{ not: 'a key' }])).toString('base64url');
export const nulToken = Buffer.from(JSON.stringify(['a\u0000b'])).toString('base64url');

/** Runs `fn` with the service's clock stopped at `at` (Hawk still uses real time), then restores it. */
export async function withClockAt(q: TestQueue, at: Date, fn: () => Promise<void>): Promise<void> {
  const clock = q.service.ctx.clock;
  q.service.ctx.clock = { now: () => at };
  try {
    await fn();
  } finally {
    q.service.ctx.clock = clock;
  }
}
