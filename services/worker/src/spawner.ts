// Starting processes off the main thread. child_process.spawn blocks its thread until the child has
// exec'd (fork, exec, and libuv's wait for the exec to succeed): measured 2–4 ms per `true` on this
// 2-core machine, 5.5 s of the worker's 19 s profile for 1,500 tasks — the main event loop was
// mostly busy starting processes. A few threads, each with its own event loop, start them instead,
// while the main thread keeps claiming, uploading and reporting. The children write their output
// straight into a file descriptor (no pipes to pump), so a thread only reports the pid and the exit.
import { Worker } from 'node:worker_threads';

export interface SpawnRequest {
  file: string;
  args: string[];
  shell: boolean;
  cwd: string;
  env: Record<string, string>;
  /** stdout and stderr of the child (one descriptor: their lines interleave as written). */
  outputFd: number;
}

export interface SpawnResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  spawnError?: Error;
}

// Plain JavaScript: worker threads do not inherit the TypeScript loader.
const threadCode = `
const { parentPort } = require('node:worker_threads');
const { spawn } = require('node:child_process');
parentPort.on('message', ({ id, file, args, shell, cwd, env, outputFd }) => {
  let child;
  try {
    child = spawn(file, args, { cwd, env, shell, detached: true, stdio: ['ignore', outputFd, outputFd] });
  } catch (err) {
    parentPort.postMessage({ id, kind: 'exit', exitCode: null, signal: null, error: String(err && err.message || err) });
    return;
  }
  let error;
  child.on('spawn', () => parentPort.postMessage({ id, kind: 'pid', pid: child.pid }));
  child.on('error', (err) => { error = String(err && err.message || err); });
  child.on('close', (exitCode, signal) => parentPort.postMessage({ id, kind: 'exit', exitCode, signal, error }));
});
`;

interface Pending {
  thread: Worker;
  onPid(pid: number): void;
  resolve(r: SpawnResult): void;
}

export class Spawner {
  private readonly threads: Worker[];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private nextThread = 0;

  constructor(threads: number) {
    this.threads = Array.from({ length: Math.max(1, threads) }, () => {
      const w = new Worker(threadCode, { eval: true });
      w.on('message', (m: { id: number; kind: 'pid' | 'exit'; pid?: number; exitCode?: number | null; signal?: NodeJS.Signals | null; error?: string }) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        if (m.kind === 'pid') {
          p.onPid(m.pid!);
          return;
        }
        this.pending.delete(m.id);
        p.resolve({ exitCode: m.exitCode ?? null, signal: m.signal ?? null, ...(m.error ? { spawnError: new Error(m.error) } : {}) });
      });
      // a thread that dies fails what it was running (those tasks fail; the worker goes on)
      w.on('error', (err) => this.failAll(w, err));
      w.on('exit', () => this.failAll(w, new Error('the process-starting thread exited')));
      w.unref();
      return w;
    });
  }

  /** Starts the process; `onPid` once it runs; resolves when it has exited. */
  run(req: SpawnRequest, onPid: (pid: number) => void): Promise<SpawnResult> {
    const id = this.nextId++;
    const thread = this.threads[this.nextThread++ % this.threads.length]!;
    return new Promise((resolve) => {
      this.pending.set(id, { thread, onPid, resolve });
      thread.postMessage({ id, ...req });
    });
  }

  private failAll(thread: Worker, err: Error): void {
    for (const [id, p] of this.pending) {
      if (p.thread !== thread) continue;
      this.pending.delete(id);
      p.resolve({ exitCode: null, signal: null, spawnError: err });
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.terminate()));
  }
}
