// Starts a real queue service (real PostgreSQL, real HTTP) for a test file, with its own database
// and exchange prefix, and gives back taskcluster-client instances pointed at it.
import { randomBytes } from 'node:crypto';
import taskcluster from 'taskcluster-client';
import { startQueue, type QueueService } from '../../services/queue/src/app.js';
import { loadConfig, type Config } from '../../services/queue/src/config.js';
import { createTestDatabase, type TestDatabase } from './db.js';

export const amqpUrl = process.env.TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

export interface TestQueue {
  service: QueueService;
  database: TestDatabase;
  config: Config;
  rootUrl: string;
  credentials: { clientId: string; accessToken: string };
  /** A taskcluster-client Queue with root credentials (optionally narrowed). */
  queue(opts?: { authorizedScopes?: string[]; credentials?: object }): any;
  stop(): Promise<void>;
}

export async function startTestQueue(overrides: Partial<Config> = {}): Promise<TestQueue> {
  const database = await createTestDatabase();
  const config = loadConfig(
    {},
    {
      port: 0,
      databaseUrl: database.url,
      rootAccessToken: randomBytes(16).toString('hex'),
      // a key of its own: test queues never read or make the key file under .conveyor/
      clientTokenKey: randomBytes(32),
      exchangePrefix: `exchange/conveyor-test-${randomBytes(4).toString('hex')}/v1/`,
      logLevel: (process.env.TEST_LOG_LEVEL as Config['logLevel']) ?? 'silent',
      // several test files (and developers) share one PostgreSQL with max_connections 100
      dbPoolSize: 5,
      ...overrides,
    },
  );
  const service = await startQueue({ config, api: true, loops: config.enableLoops });
  const rootUrl = service.url;
  config.rootUrl = rootUrl;
  const credentials = { clientId: config.rootClientId, accessToken: config.rootAccessToken! };
  return {
    service,
    database,
    config,
    rootUrl,
    credentials,
    queue: (opts = {}) => new taskcluster.Queue({ rootUrl, credentials, retries: 0, ...opts }),
    async stop() {
      await service.stop();
      await database.drop();
    },
  };
}
