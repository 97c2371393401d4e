// The queue service as a child process (`conveyor start`), for tests that kill it: SIGKILL leaves
// no chance to clean up, exactly like a crash.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const mainTs = fileURLToPath(new URL('../../services/queue/src/main.ts', import.meta.url));

export interface ChildService {
  child: ChildProcess;
  output(): string;
}

/** Starts `conveyor start` with `env` and resolves once it answers ping at `rootUrl`. */
export async function startChildService(env: Record<string, string>, rootUrl: string, timeoutMs = 30_000): Promise<ChildService> {
  let out = '';
  const child = spawn(process.execPath, ['--import', 'tsx', mainTs, 'start'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`service exited with ${child.exitCode}:\n${out}`);
    try {
      if ((await fetch(`${rootUrl}/api/queue/v1/ping`)).status === 200) return { child, output: () => out };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`service did not answer ping within ${timeoutMs} ms:\n${out}`);
}

/** SIGKILL, and wait until the process is gone. */
export async function killChild(s: ChildService): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  const gone = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGKILL');
  await gone;
}
