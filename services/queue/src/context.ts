// What every domain function receives: the database, configuration, the clock and the logger.
// Time is injected so tests can move `now` without sleeping.
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from './config.js';
import type { Db } from './db/database.js';
import type { PendingWaiters } from './claims/waiters.js';

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export interface Ctx {
  db: Db;
  /**
   * The connections the shared transactions of db/batcher.ts run on (each lane holds one): their
   * few statements keep generic plans (db/database.ts).
   */
  batchDb: Db;
  config: Config;
  clock: Clock;
  log: FastifyBaseLogger;
  /** Credentials the queue signs temporary credentials with (the root client). */
  issuer: { clientId: string; accessToken: string };
  /** Wake-ups for claimWork long-polls. */
  waiters: PendingWaiters;
  /** Aborts when the process starts draining: long-polls answer `{tasks: []}` at once. */
  draining: AbortSignal;
}
