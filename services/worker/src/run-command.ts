// Runs one command in its own process group, so a timeout or an abort kills everything it started
// (a shell's children too), and so do stray background processes left behind when it exits.
import { spawn } from 'node:child_process';

export interface CommandResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
  /** The program could not be started (not found, not executable). */
  spawnError?: Error;
  durationMs: number;
}

export interface CommandOptions {
  command: string | string[];
  cwd: string;
  env: Record<string, string>;
  maxRunTimeMs: number;
  signal: AbortSignal;
  onOutput(chunk: Buffer): void;
}

function killGroup(pid: number | undefined): void {
  if (!pid) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // ESRCH: the group is gone already
  }
}

export function runCommand(o: CommandOptions): Promise<CommandResult> {
  const started = Date.now();
  const [file, ...args] = typeof o.command === 'string' ? [o.command] : o.command;
  const child = spawn(file!, args, {
    cwd: o.cwd,
    env: o.env,
    detached: true,
    shell: typeof o.command === 'string',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let timedOut = false;
  let aborted = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid);
  }, o.maxRunTimeMs);
  const onAbort = () => {
    aborted = true;
    killGroup(child.pid);
  };
  if (o.signal.aborted) onAbort();
  else o.signal.addEventListener('abort', onAbort, { once: true });
  child.stdout.on('data', o.onOutput);
  child.stderr.on('data', o.onOutput);

  return new Promise((resolve) => {
    let spawnError: Error | undefined;
    child.on('error', (err) => {
      spawnError = err;
    });
    // the process is gone, but background children may still hold the pipes open
    child.on('exit', () => killGroup(child.pid));
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      o.signal.removeEventListener('abort', onAbort);
      resolve({ exitCode, signal, timedOut, aborted, spawnError, durationMs: Date.now() - started });
    });
  });
}
