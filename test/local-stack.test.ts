// The one-command stack as a user runs it: `conveyor start` brings up the queue, a generic worker on
// local/generic and the scheduler; `conveyor pipeline submit examples/pipeline.yaml --wait` runs the
// example to the end; SIGTERM stops everything cleanly.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { waitFor } from './harness/wait.js';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

function run(args: string[], env: Record<string, string>): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'services/queue/src/main.ts', ...args], {
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return { child, output: () => out };
}

describe('npm start: the local stack', () => {
  let db: TestDatabase;
  let stack: ReturnType<typeof run>;
  let env: Record<string, string>;

  before(async () => {
    db = await createTestDatabase();
    const port = await freePort();
    const schedulerPort = await freePort();
    env = {
      DATABASE_URL: db.url,
      PORT: String(port),
      ROOT_URL: `http://localhost:${port}`,
      ROOT_ACCESS_TOKEN: 'local-stack-test-token',
      SCHEDULER_PORT: String(schedulerPort),
      SCHEDULER_URL: `http://localhost:${schedulerPort}`,
      // a scheduler and worker of their own, apart from other test files on this machine
      SCHEDULER_ID: `stack-${port}`,
      WORKER_TASK_QUEUE_ID: 'local/generic',
      AMQP_URL: '',
    };
    stack = run(['start', '--local'], env);
  });
  after(async () => {
    stack?.child.kill('SIGKILL');
    await db?.drop();
  });

  it('starts the queue, a generic worker and the scheduler, runs the example pipeline, and stops on SIGTERM', async () => {
    const banner = await waitFor('the stack banner', () => (/database:/.test(stack.output()) ? stack.output() : undefined), { timeoutMs: 30_000 });
    assert.match(banner, /Conveyor queue is up/);
    assert.match(banner, /worker: +local\/local-1 runs up to \d+ tasks at once from local\/generic/);
    assert.match(banner, new RegExp(`scheduler: +http://localhost:${env.SCHEDULER_PORT}/api/scheduler/v1/`));

    const cli = run(['pipeline', 'submit', 'examples/pipeline.yaml', '--wait'], env);
    const failing = run(['pipeline', 'submit', 'examples/failing-pipeline.yaml', '--wait'], env);
    const [[code], [failCode]] = await Promise.all([once(cli.child, 'exit'), once(failing.child, 'exit')]);
    const out = cli.output();
    assert.equal(code, 0, out);
    assert.match(out, /pipeline \S+ \(hello-pipeline\): completed/);
    assert.match(out, /stage package: completed/);

    assert.equal(failCode, 1, failing.output());
    assert.match(failing.output(), /failed — stage test: task unit \(\S+\) failed/);

    const exited = once(stack.child, 'exit');
    stack.child.kill('SIGTERM');
    const [stackCode] = await exited;
    assert.equal(stackCode, 0, stack.output());
  });
});
