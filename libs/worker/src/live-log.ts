// A log that readers can follow while the task runs. Conveyor stores artifacts in PostgreSQL and has
// no append operation, so the log is kept in a local file and the whole file is re-uploaded under
// the same name (re-posting an s3 artifact with the same content type and expiry is idempotent and
// hands out a fresh putUrl) at most every `intervalMs` while it grows, and once more at the end.
// A reader sees the log as of the last upload: up to `intervalMs` behind while running, complete
// after close().
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { UploadBody } from './artifacts.js';

export interface LiveLogOptions {
  /** Artifact name (default public/logs/live.log). */
  name?: string;
  /** Least time between two uploads while the task runs (default 1000 ms). */
  intervalMs?: number;
  contentType?: string;
}

export type Upload = (name: string, body: UploadBody, contentType: string) => Promise<void>;

export class LiveLog {
  readonly name: string;
  private readonly intervalMs: number;
  private readonly contentType: string;
  private dir: string | undefined;
  private file: WriteStream | undefined;
  private opening: Promise<void> | undefined;
  private written = 0;
  private uploaded = -1;
  private timer: NodeJS.Timeout | undefined;
  private uploading: Promise<void> = Promise.resolve();
  private closed = false;
  /** The last upload error, if any; uploads go on after one fails. */
  lastError: unknown;

  constructor(private readonly upload: Upload, opts: LiveLogOptions = {}) {
    this.name = opts.name ?? 'public/logs/live.log';
    this.intervalMs = opts.intervalMs ?? 1000;
    this.contentType = opts.contentType ?? 'text/plain; charset=utf-8';
    this.timer = setTimeout(() => this.tick(), this.intervalMs);
  }

  private open(): Promise<void> {
    return (this.opening ??= (async () => {
      this.dir = await mkdtemp(join(tmpdir(), 'conveyor-log-'));
      this.file = createWriteStream(join(this.dir, 'live.log'));
    })());
  }

  /** Appends; resolves once the bytes are in the local file (the next upload carries them). */
  async write(chunk: string | Uint8Array): Promise<void> {
    if (this.closed) throw new Error(`live log ${this.name} is closed`);
    await this.open();
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (bytes.byteLength === 0) return;
    await new Promise<void>((resolve, reject) => this.file!.write(bytes, (err) => (err ? reject(err) : resolve())));
    this.written += bytes.byteLength;
  }

  /** Bytes written so far. */
  get size(): number {
    return this.written;
  }

  private tick(): void {
    this.timer = undefined;
    if (this.closed) return;
    this.flush().finally(() => {
      if (!this.closed) this.timer = setTimeout(() => this.tick(), this.intervalMs);
    });
  }

  /** Uploads what was written so far, unless that was uploaded already. */
  flush(): Promise<void> {
    this.uploading = this.uploading.then(async () => {
      const size = this.written;
      if (size === this.uploaded) return;
      try {
        await this.open();
        await this.upload(this.name, { file: join(this.dir!, 'live.log'), size }, this.contentType);
        this.uploaded = size;
      } catch (err) {
        this.lastError = err;
      }
    });
    return this.uploading;
  }

  /** Final upload (throws if it fails), then removes the local file. Safe to call twice. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      clearTimeout(this.timer);
      await this.open();
      await new Promise<void>((resolve) => this.file!.end(resolve));
      this.lastError = undefined;
      await this.flush();
      try {
        if (this.lastError) throw this.lastError;
      } finally {
        await rm(this.dir!, { recursive: true, force: true });
      }
    }
  }
}
