// Assembles the queue service: database, HTTP API, background loops. start/stop are safe to call
// twice; stop drains (long-polls answer at once, in-flight requests finish) before closing.
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { Authenticator } from './auth/authenticate.js';
import { clientLookup, encryptPlainTokens } from './auth/clients.js';
import { PendingWaiters } from './claims/waiters.js';
import { clientTokenKey, type Config } from './config.js';
import { systemClock, type Clock, type Ctx } from './context.js';
import { createDb, openDatabase } from './db/database.js';
import { referenceRoutes } from './http/reference.js';
import { metricsRoutes } from './meta/metrics.js';
import { endpoints } from './http/routes.js';
import { buildServer } from './http/server.js';
import { extraPlugins, startServices, type Service } from './services.js';

export interface QueueService {
  ctx: Ctx;
  app: FastifyInstance;
  url: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  config: Config;
  clock?: Clock;
  /** Serve HTTP (api, start). */
  api?: boolean;
  /** Background loops and the relay (background, relay, start). */
  loops?: boolean;
  logger?: pino.Logger;
}

export async function startQueue({ config, clock = systemClock, api = true, loops = config.enableLoops, logger }: StartOptions): Promise<QueueService> {
  const log = logger ?? pino({ level: config.logLevel, base: { service: 'queue' } });
  // before any connection: a bad key file fails the start with nothing to clean up
  const tokenKey = clientTokenKey(config);
  const { db } = createDb(config.databaseUrl!, config.dbPoolSize);
  // one connection per lane of the batchers (2 each for createTask, claimWork, reports, uploads)
  const { db: batchDb } = createDb(config.databaseUrl!, Math.min(8, config.dbPoolSize), 'batch');
  try {
    await openDatabase(db, config, log);
  } catch (err) {
    await Promise.all([db.destroy(), batchDb.destroy()]);
    throw err;
  }
  await encryptPlainTokens(db, tokenKey, log);

  const draining = new AbortController();
  const waiters = new PendingWaiters(config.databaseUrl!, log);
  await waiters.start();
  const ctx: Ctx = {
    db,
    batchDb,
    config,
    clock,
    log,
    issuer: { clientId: config.rootClientId, accessToken: config.rootAccessToken! },
    waiters,
    draining: draining.signal,
  };

  const authenticator = new Authenticator({ lookupClient: clientLookup(db, config, log), anonymousScopes: config.anonymousScopes });
  const app = await buildServer({
    ctx,
    authenticator,
    endpoints,
    plugins: [metricsRoutes, referenceRoutes(endpoints, config.rootUrl, config.exchangePrefix), ...extraPlugins(ctx)],
  });
  let url = '';
  if (api) {
    url = await app.listen({ port: config.port, host: '0.0.0.0' });
    url = `http://localhost:${new URL(url).port}`;
  }
  const services: Service[] = loops ? await startServices(ctx) : [];

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      draining.abort();
      waiters.wakeAll();
      await app.close();
      for (const s of services.reverse()) await s.stop();
      await waiters.stop();
      await batchDb.destroy();
      await db.destroy();
    })());
  return { ctx, app, url, stop };
}
