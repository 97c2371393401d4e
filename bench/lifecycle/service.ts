// The queue service under test, as its own process (`conveyor start`) on its own database.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const thisMainTs = fileURLToPath(new URL('../../services/queue/src/main.ts', import.meta.url));

export interface ServiceOptions {
  databaseUrl: string;
  amqpUrl?: string;
  /** extra environment (e.g. DB_POOL_SIZE) */
  env?: Record<string, string>;
  /** extra node flags, e.g. --cpu-prof */
  nodeArgs?: string[];
  /** main.ts of another checkout (--baseline); default this one */
  mainTs?: string;
}

export interface RunningService {
  pid: number;
  rootUrl: string;
  credentials: { clientId: string; accessToken: string };
  /** SIGTERM, then wait for the exit (the service drains first). */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function waitReady(child: ChildProcess, url: string, output: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the service exited (${child.exitCode}) before it was ready:\n${output()}`);
    try {
      const res = await fetch(`${url}/api/queue/v1/ping`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the service did not answer ping within 60 s:\n${output()}`);
}

export async function startService(opts: ServiceOptions): Promise<RunningService> {
  const port = await freePort();
  const rootUrl = `http://127.0.0.1:${port}`;
  const accessToken = randomBytes(24).toString('base64url');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    PORT: String(port),
    ROOT_URL: rootUrl,
    DATABASE_URL: opts.databaseUrl,
    ROOT_ACCESS_TOKEN: accessToken,
    LOG_LEVEL: 'warn',
    EXCHANGE_PREFIX: `exchange/conveyor-bench-${randomBytes(4).toString('hex')}/v1/`,
    ...(opts.amqpUrl ? { AMQP_URL: opts.amqpUrl } : {}),
    ...opts.env,
  };
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', opts.mainTs ?? thisMainTs, 'start'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  // the bench ending without stop() (an error, or a signal run.ts turns into an exit) must not
  // leave the service running
  const killOnExit = () => child.kill('SIGTERM');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((r) =>
    child.once('exit', () => {
      process.off('exit', killOnExit);
      r();
    }),
  );
  try {
    await waitReady(child, rootUrl, () => out);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    pid: child.pid!,
    rootUrl,
    credentials: { clientId: 'root', accessToken },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
