// Starting processes from small helper processes. child_process.spawn forks the calling process
// and blocks until the child has exec'd. Forking the worker itself (a Node process of ~150 MB with
// its TypeScript loader) copies its page tables every time, and every page the worker writes while
// the child has not exec'd yet is a copy-on-write fault. Measured per `true` with 8 in flight on
// this 2-core machine: ~3.6 ms of CPU started from threads of a 180 MB process, ~2.1 ms through a
// helper (a bare `node` of ~40 MB; the `true` itself included), and 8 → 4 ms of wall time each.
//
// A helper starts one process per message in its own process group, opens the task's log file for
// it (stdout and stderr, one O_APPEND descriptor: their lines interleave as written, and nothing is
// pumped through pipes), kills the group on request, and when the process has exited kills the
// group too (what it left running in the background) and reports the exit. Each message between
// processes costs both sides a system call and a wake-up, so a command that ends quickly costs one
// message each way; one still running after `pidAfterMs` also reports its pid, so the worker can
// kill its group itself should the helper die. A helper that dies fails the commands it was
// watching (those whose pid it reported are killed; younger ones are left to end by themselves) and
// is replaced for the next ones. Helpers exit when the worker does: their IPC channel closes.
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

export interface Spawned {
  /** Resolves once the process has exited and its process group was killed. */
  done: Promise<SpawnResult>;
  /** Kills the process group (SIGKILL), now or as soon as the process runs. */
  kill(): void;
  /** The process id, once the helper reported it (a command running longer than pidAfterMs). */
  pid(): number | undefined;
}

const pidAfterMs = 50;

// Plain JavaScript run by a bare `node -e`: no TypeScript loader, as little memory as Node takes.
const helperCode = `
const { spawn } = require('node:child_process');
const { openSync, closeSync } = require('node:fs');
const send = (m) => { if (process.connected) process.send(m); };
const message = (err) => String((err && err.message) || err);
const killGroup = (pid) => {
  try { process.kill(-pid, 'SIGKILL'); } catch {}
};
const running = new Map();
process.on('message', (m) => {
  if (m.kind === 'kill') {
    const child = running.get(m.id);
    if (child && child.pid) killGroup(child.pid);
    return;
  }
  const { id, file, args, shell, cwd, env, outputPath } = m;
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
  running.set(id, child);
  let error;
  const pidReport = child.pid ? setTimeout(() => send({ id, kind: 'pid', pid: child.pid }), ${pidAfterMs}) : undefined;
  child.on('error', (err) => { error = message(err); });
  child.on('close', (exitCode, signal) => {
    clearTimeout(pidReport);
    running.delete(id);
    if (child.pid) killGroup(child.pid);
    send({ id, kind: 'exit', exitCode, signal, error });
  });
});
// the worker has gone (stopped, or died): nobody will wait for these commands
process.on('disconnect', () => {
  for (const child of running.values()) if (child.pid) killGroup(child.pid);
  process.exit(0);
});
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
  pid?: number;
  resolve(r: SpawnResult): void;
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // ESRCH: the group is gone already
  }
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
        p.pid = m.pid;
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
        for (const p of this.pending.values()) {
          if (p.pid) killGroup(p.pid);
          p.resolve({ exitCode: null, signal: null, spawnError: err });
        }
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
    this.process.send({ id, kind: 'run', ...req });
  }

  kill(id: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    if (p.pid) killGroup(p.pid);
    else if (this.process.connected) this.process.send({ id, kind: 'kill' });
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

  /** Starts the process in its own process group. */
  run(req: SpawnRequest): Spawned {
    if (this.stopped) {
      return { done: Promise.resolve({ exitCode: null, signal: null, spawnError: new Error('the worker is stopping') }), kill() {}, pid: () => undefined };
    }
    const helper = this.helper(this.nextHelper++ % this.helpers.length);
    const id = this.nextId++;
    let pending!: Pending;
    const done = new Promise<SpawnResult>((resolve) => helper.run(id, req, (pending = { resolve })));
    return { done, kill: () => helper.kill(id), pid: () => pending.pid };
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
