// A log that readers can follow while the task runs. Conveyor stores artifacts in PostgreSQL and has
// no append operation, so the whole log is re-uploaded under the same name (to the same putUrl
// while it is valid) at most every `intervalMs` while it grows, and once more at close(). A reader
// sees the log as of the last upload: up to `intervalMs` behind while running, complete after
// close(). The log is kept in memory up to `spillBytes`, then in a temporary file — or, with
// `file`, it is a file that others append to as well (a child process writing its output there).
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, open, rm, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { UploadBody } from './artifacts.js';

export interface LiveLogOptions {
  /** Artifact name (default public/logs/live.log). */
  name?: string;
  /** Least time between two uploads while the task runs (default 1000 ms). */
  intervalMs?: number;
  contentType?: string;
  /** Beyond this many bytes the log moves from memory to a temporary file (default 1 MiB). */
  spillBytes?: number;
  /**
   * The log is this file, which others may append to too (opened with O_APPEND, as 'a' does);
   * write() appends to it, uploads send what it holds, close() deletes it.
   */
  file?: string;
}

/** The first read of a shared log file: a log this small needs no other call. */
const firstReadBytes = 16 * 1024;

export type Upload = (name: string, body: UploadBody, contentType: string) => Promise<void>;

export class LiveLog {
  readonly name: string;
  private readonly intervalMs: number;
  readonly contentType: string;
  private readonly spillBytes: number;
  private readonly shared: string | undefined;
  /** The shared file, opened once (append and read): each open/close is a round trip to the thread pool. */
  private handle: FileHandle | undefined;
  private memory: Buffer[] = [];
  private dir: string | undefined;
  private file: WriteStream | undefined;
  /** Serialises writes, spilling and uploads, so bytes land and ship in order. */
  private chain: Promise<void> = Promise.resolve();
  private written = 0;
  private uploaded = -1;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The last upload error, if any; uploads go on after one fails. */
  lastError: unknown;

  constructor(private readonly upload: Upload, opts: LiveLogOptions = {}) {
    this.name = opts.name ?? 'public/logs/live.log';
    this.intervalMs = opts.intervalMs ?? 1000;
    this.contentType = opts.contentType ?? 'text/plain; charset=utf-8';
    this.spillBytes = opts.spillBytes ?? 1024 * 1024;
    this.shared = opts.file;
    this.timer = setTimeout(() => this.tick(), this.intervalMs);
  }

  private then(step: () => Promise<void>): Promise<void> {
    const next = this.chain.then(step);
    this.chain = next.catch(() => {});
    return next;
  }

  /** Appends; resolves once the bytes are held (the next upload carries them). */
  write(chunk: string | Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`live log ${this.name} is closed`));
    const bytes = Buffer.from(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    if (bytes.byteLength === 0) return Promise.resolve();
    return this.then(async () => {
      if (this.shared) {
        await (await this.sharedFile()).write(bytes);
      } else if (!this.file && this.written + bytes.byteLength <= this.spillBytes) {
        this.memory.push(bytes);
      } else {
        if (!this.file) await this.spill();
        await new Promise<void>((resolve, reject) => this.file!.write(bytes, (err) => (err ? reject(err) : resolve())));
      }
      this.written += bytes.byteLength;
    });
  }

  private async sharedFile(): Promise<FileHandle> {
    // 'a+': writes append (as the others' do), reads take any position
    return (this.handle ??= await open(this.shared!, 'a+'));
  }

  /**
   * What the shared file holds: in memory up to `spillBytes`, else streamed from the file. A small
   * log (most are) is one read, without asking for its size first.
   */
  private async sharedBody(): Promise<{ size: number; body: UploadBody }> {
    const file = await this.sharedFile();
    const first = Buffer.allocUnsafe(Math.min(this.spillBytes + 1, firstReadBytes));
    const { bytesRead } = await file.read(first, 0, first.length, 0);
    if (bytesRead < first.length) return { size: bytesRead, body: first.subarray(0, bytesRead) };
    const { size } = await file.stat();
    if (size > this.spillBytes) return { size, body: { file: this.shared!, size } };
    const bytes = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const { bytesRead: n } = await file.read(bytes, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    return { size: got, body: bytes.subarray(0, got) };
  }

  private async spill(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), 'conveyor-log-'));
    this.file = createWriteStream(join(this.dir, 'live.log'));
    for (const b of this.memory) this.file.write(b);
    this.memory = [];
  }

  /** Bytes written so far through write() (not counting what others appended to a shared file). */
  get size(): number {
    return this.written;
  }

  private tick(): void {
    this.timer = undefined;
    if (this.closed) return;
    void this.flush().finally(() => {
      if (!this.closed) this.timer = setTimeout(() => this.tick(), this.intervalMs);
    });
  }

  /** Uploads what was written so far, unless that was uploaded already. */
  flush(): Promise<void> {
    return this.then(async () => {
      let size = this.written;
      let body: UploadBody;
      try {
        if (this.shared) ({ size, body } = await this.sharedBody());
        else body = this.file ? { file: join(this.dir!, 'live.log'), size } : Buffer.concat(this.memory);
      } catch (err) {
        this.lastError = err;
        return;
      }
      if (size === this.uploaded) return;
      try {
        await this.upload(this.name, body, this.contentType);
        this.uploaded = size;
      } catch (err) {
        this.lastError = err;
      }
    });
  }

  /** Final upload (throws if it fails), then drops the local copy. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    await this.then(async () => {
      if (this.file) await new Promise<void>((resolve) => this.file!.end(resolve));
    });
    this.lastError = undefined;
    await this.flush();
    try {
      if (this.lastError) throw this.lastError;
    } finally {
      this.memory = [];
      if (this.dir) await rm(this.dir, { recursive: true, force: true });
      if (this.shared) {
        await this.handle?.close();
        await unlink(this.shared).catch(() => {});
      }
    }
  }
}
