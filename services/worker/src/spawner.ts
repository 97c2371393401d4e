// Starting processes from small helper processes. child_process.spawn forks the calling process
// and blocks until the child has exec'd. Forking the worker itself (a Node process of ~150 MB with
// its TypeScript loader) copies its page tables every time, and every page the worker writes while
// the child has not exec'd yet is a copy-on-write fault. Measured per `true` with 8 in flight on
// this 2-core machine: ~3.6 ms of CPU started from threads of a 180 MB process, ~2.1 ms through a
// helper (a bare `node` of ~40 MB; the `true` itself included), and 8 → 4 ms of wall time each.
// A helper starts one process per message, opens the task's log file for it (stdout and stderr, one
// O_APPEND descriptor: their lines interleave as written, and nothing is pumped through pipes),
// reports the pid once it runs, then its exit. A helper that dies fails the processes it was
// starting or watching (runCommand then kills their process groups) and is replaced for the next
// ones. Helpers exit when the worker does: their IPC channel closes.
import { spawn, type ChildProcess } from 'node:child_process';

export interface SpawnRequest {
  file: string;
  args: string[];
  shell: boolean;
  cwd: string;
  env: Record<string, string>;
  /** The file stdout and stderr are appended to. */
  outputPath: string;
}

export interface SpawnResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  spawnError?: Error;
}

// Plain JavaScript run by a bare `node -e`: no TypeScript loader, as little memory as Node takes.
const helperCode = `
const { spawn } = require('node:child_process');
const { openSync, closeSync } = require('node:fs');
const send = (m) => { if (process.connected) process.send(m); };
const message = (err) => String((err && err.message) || err);
process.on('message', ({ id, file, args, shell, cwd, env, outputPath }) => {
  let fd;
  let child;
  try {
    fd = openSync(outputPath, 'a');
    child = spawn(file, args, { cwd, env, shell, detached: true, stdio: ['ignore', fd, fd] });
  } catch (err) {
    send({ id, kind: 'exit', exitCode: null, signal: null, error: message(err) });
    return;
  } finally {
    // the child has its own copy once spawn() returns
    if (fd !== undefined) closeSync(fd);
  }
  let error;
  child.on('spawn', () => send({ id, kind: 'pid', pid: child.pid }));
  child.on('error', (err) => { error = message(err); });
  child.on('close', (exitCode, signal) => send({ id, kind: 'exit', exitCode, signal, error }));
});
process.on('disconnect', () => process.exit(0));
`;

interface HelperMessage {
  id: number;
  kind: 'pid' | 'exit';
  pid?: number;
  exitCode?: number | null;
  signal?: NodeJS.Signals | null;
  error?: string;
}

interface Pending {
  onPid(pid: number): void;
  resolve(r: SpawnResult): void;
}

class Helper {
  readonly process: ChildProcess;
  readonly pending = new Map<number, Pending>();
  readonly exited: Promise<void>;

  constructor(onGone: (h: Helper) => void) {
    // env: the helper needs none (each command gets its own), and must not load the worker's loader
    this.process = spawn(process.execPath, ['-e', helperCode], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: {}, serialization: 'json' });
    this.process.on('message', (m: HelperMessage) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      if (m.kind === 'pid') {
        p.onPid(m.pid!);
        return;
      }
      this.pending.delete(m.id);
      this.idleUnlessBusy();
      p.resolve({ exitCode: m.exitCode ?? null, signal: m.signal ?? null, ...(m.error ? { spawnError: new Error(m.error) } : {}) });
    });
    this.exited = new Promise((resolve) => {
      let gone = false;
      const fail = (err: Error) => {
        if (gone) return;
        gone = true;
        onGone(this);
        for (const p of this.pending.values()) p.resolve({ exitCode: null, signal: null, spawnError: err });
        this.pending.clear();
        resolve();
      };
      this.process.on('error', (err) => fail(err));
      this.process.on('exit', () => fail(new Error('the process-starting helper exited')));
    });
    this.idleUnlessBusy();
  }

  run(id: number, req: SpawnRequest, p: Pending): void {
    this.pending.set(id, p);
    // a command being watched keeps the worker alive (its exit, or the helper's), an idle helper does not
    this.process.ref();
    this.process.channel?.ref();
    this.process.send({ id, ...req });
  }

  private idleUnlessBusy(): void {
    if (this.pending.size > 0) return;
    this.process.unref();
    this.process.channel?.unref();
  }
}

export class Spawner {
  private readonly helpers: Array<Helper | undefined>;
  private nextId = 0;
  private nextHelper = 0;
  private stopped = false;

  constructor(helpers: number) {
    this.helpers = Array.from({ length: Math.max(1, helpers) }, () => undefined);
    for (let i = 0; i < this.helpers.length; i++) this.helper(i);
  }

  private helper(slot: number): Helper {
    return (this.helpers[slot] ??= new Helper((gone) => {
      if (this.helpers[slot] === gone) this.helpers[slot] = undefined;
    }));
  }

  /** The helpers' process ids (for diagnostics and tests). */
  get helperPids(): number[] {
    return this.helpers.flatMap((h) => (h?.process.pid ? [h.process.pid] : []));
  }

  /** Starts the process; `onPid` once it runs; resolves when it has exited. */
  run(req: SpawnRequest, onPid: (pid: number) => void): Promise<SpawnResult> {
    if (this.stopped) return Promise.resolve({ exitCode: null, signal: null, spawnError: new Error('the worker is stopping') });
    const helper = this.helper(this.nextHelper++ % this.helpers.length);
    return new Promise((resolve) => helper.run(this.nextId++, req, { onPid, resolve }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(
      this.helpers.map((h) => {
        if (!h) return undefined;
        // waited for: keep the worker alive until it has gone
        h.process.ref();
        if (h.process.connected) h.process.disconnect();
        return h.exited;
      }),
    );
  }
}
