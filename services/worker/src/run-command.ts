// Runs one command in its own process group, so a timeout or an abort kills everything it started
// (a shell's children too), and so do stray background processes left behind when it exits.
import type { Spawner } from './spawner.js';

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
  /** The file stdout and stderr are appended to. */
  outputPath: string;
  spawner: Spawner;
}

export async function runCommand(o: CommandOptions): Promise<CommandResult> {
  const started = Date.now();
  const [file, ...args] = typeof o.command === 'string' ? [o.command] : o.command;
  let timedOut = false;
  let aborted = false;
  // the helper kills the process group when the command has exited: what it left running goes too
  const spawned = o.spawner.run({ file: file!, args, shell: typeof o.command === 'string', cwd: o.cwd, env: o.env, outputPath: o.outputPath });
  const timer = setTimeout(() => {
    timedOut = true;
    spawned.kill();
  }, o.maxRunTimeMs);
  const onAbort = () => {
    aborted = true;
    spawned.kill();
  };
  if (o.signal.aborted) onAbort();
  else o.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const r = await spawned.done;
    return { ...r, timedOut, aborted, durationMs: Date.now() - started };
  } finally {
    clearTimeout(timer);
    o.signal.removeEventListener('abort', onAbort);
  }
}
