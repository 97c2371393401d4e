// At start the service waits for PostgreSQL (DB_WAIT_SEC) while it is unreachable — started
// together with it, the database may come up later — and then fails with a message that says
// where it tried; a database that answers but refuses (a missing database) fails at once.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { startQueue } from '../services/queue/src/app.js';
import { loadConfig, type Config } from '../services/queue/src/config.js';
import { DatabaseUnreachable } from '../services/queue/src/db/database.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { TcpProxy } from './harness/proxy.js';

describe('waiting for the database at start', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let proxied: string;
  before(async () => {
    database = await createTestDatabase();
    const u = new URL(database.url);
    proxy = new TcpProxy(u.hostname, Number(u.port || 5432));
    u.port = String(await proxy.listen());
    proxied = u.toString();
  });
  after(async () => {
    await proxy?.close();
    await database?.drop();
  });

  const config = (o: Partial<Config>) =>
    loadConfig({}, {
      port: 0, rootAccessToken: randomBytes(16).toString('hex'), clientTokenKey: randomBytes(32), logLevel: 'silent',
      dbPoolSize: 2, enableLoops: false, ...o,
    });

  /** A logger that records the warnings it is given. */
  const recording = () => {
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).msg) });
    return { logger, warnings };
  };

  it('waits while the database refuses connections and starts once it answers', async () => {
    proxy.cut();
    const { logger, warnings } = recording();
    const starting = startQueue({ config: config({ databaseUrl: proxied, dbWaitSec: 60 }), logger, loops: false });
    await new Promise<void>((resolve, reject) => {
      const poll = setInterval(() => {
        if (warnings.some((w) => /^waiting up to 60 s for the database 127\.0\.0\.1:\d+\//.test(w))) {
          clearInterval(poll);
          resolve();
        }
      }, 5);
      starting.catch((err) => {
        clearInterval(poll);
        reject(err);
      });
    });
    proxy.restore();
    const service = await starting;
    try {
      const res = await fetch(`${service.url}/api/queue/v1/__heartbeat__`);
      assert.equal(res.status, 200);
    } finally {
      await service.stop();
    }
  });

  it('gives up after DB_WAIT_SEC with a message that says where it tried', async () => {
    proxy.cut();
    const t = Date.now();
    await assert.rejects(
      startQueue({ config: config({ databaseUrl: proxied, dbWaitSec: 1 }), logger: pino({ level: 'silent' }), loops: false }),
      (err: Error) =>
        err instanceof DatabaseUnreachable &&
        /^the database 127\.0\.0\.1:\d+\/conveyor_test_\w+ did not accept connections within 1 s \(DB_WAIT_SEC\)/.test(err.message) &&
        // where, not the connection string (it may hold a password)
        !err.message.includes('postgres://'),
    );
    assert.ok(Date.now() - t < 10_000);
    proxy.restore();
  });

  it('fails at once when the database answers but refuses (no such database)', async () => {
    const u = new URL(database.url);
    u.pathname = '/conveyor_no_such_database';
    const t = Date.now();
    await assert.rejects(
      startQueue({ config: config({ databaseUrl: u.toString(), dbWaitSec: 60 }), logger: pino({ level: 'silent' }), loops: false }),
      (err: Error) => err instanceof DatabaseUnreachable && /^cannot use the database .*\/conveyor_no_such_database: database "conveyor_no_such_database" does not exist/.test(err.message),
    );
    assert.ok(Date.now() - t < 10_000, 'not waited out');
  });
});
