// Blob bytes in PostgreSQL: an upload is cut into fixed-size chunks (the last one shorter), one row
// each, so a byte offset maps to a chunk and memory stays at two chunks per transfer whatever the
// blob's size. Chunks are committed one by one, so a long upload holds no transaction open; an
// upload that dies half-way leaves rows the artifact loop deletes.
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../db/database.js';

export class TooLarge extends Error {
  constructor(readonly limit: number) {
    super(`more than ${limit} bytes`);
  }
}

export interface Written {
  size: number;
  sha256: string;
}

async function insertChunk(db: Db, uploadId: string, seq: number, data: Buffer): Promise<void> {
  await sql`INSERT INTO artifact_chunks (upload_id, seq, data) VALUES (${uploadId}, ${seq}, ${data})`.execute(db);
}

/**
 * Streams `source` into chunks of `chunkBytes`. One insert is in flight while the next chunk fills
 * (two buffers, used in turn), so reading the network and writing PostgreSQL overlap. Throws
 * TooLarge as soon as more than `maxBytes` arrived.
 */
export async function writeChunks(db: Db, uploadId: string, chunkBytes: number, source: AsyncIterable<Buffer>, maxBytes: number): Promise<Written> {
  const hash = createHash('sha256');
  const buffers = [Buffer.allocUnsafe(chunkBytes), Buffer.allocUnsafe(chunkBytes)];
  let current = 0;
  let filled = 0;
  let seq = 0;
  let size = 0;
  let inFlight: Promise<void> | undefined;

  const flush = async () => {
    // the other buffer is only reused once its insert has finished with it
    if (inFlight) await inFlight;
    const data = buffers[current]!.subarray(0, filled);
    inFlight = insertChunk(db, uploadId, seq++, data);
    // a failed insert surfaces at the next await; don't let it count as unhandled meanwhile
    inFlight.catch(() => {});
    current = 1 - current;
    filled = 0;
  };

  try {
    for await (const piece of source) {
      size += piece.length;
      if (size > maxBytes) throw new TooLarge(maxBytes);
      hash.update(piece);
      let offset = 0;
      while (offset < piece.length) {
        const n = Math.min(piece.length - offset, chunkBytes - filled);
        piece.copy(buffers[current]!, filled, offset, offset + n);
        filled += n;
        offset += n;
        if (filled === chunkBytes) await flush();
      }
    }
    if (filled > 0) await flush();
    if (inFlight) await inFlight;
  } catch (err) {
    // settle the insert before the caller deletes the upload, or it could land after the delete
    await inFlight?.catch(() => {});
    throw err;
  }
  return { size, sha256: hash.digest('hex') };
}

/**
 * Yields bytes [start, end] (inclusive) of an upload, one chunk per query, fetching the next chunk
 * while the caller writes the current one. Only the needed part of the first and last chunk is
 * read (the column is stored uncompressed, so substring() reads just those TOAST pages).
 */
export async function* readChunks(db: Db, uploadId: string, chunkBytes: number, start: number, end: number): AsyncGenerator<Buffer> {
  if (end < start) return;
  const first = Math.floor(start / chunkBytes);
  const last = Math.floor(end / chunkBytes);
  const fetchChunk = async (seq: number): Promise<Buffer> => {
    const from = seq === first ? start - seq * chunkBytes : 0;
    const to = seq === last ? end - seq * chunkBytes : chunkBytes - 1;
    const { rows } = await sql<{ data: Buffer }>`
      SELECT substring(data FROM ${from + 1}::int FOR ${to - from + 1}::int) AS data
      FROM artifact_chunks WHERE upload_id = ${uploadId} AND seq = ${seq}`.execute(db);
    const data = rows[0]?.data;
    // a missing chunk means the upload was deleted under us (expired or replaced)
    if (!data || data.length !== to - from + 1) throw new Error(`chunk ${seq} of upload ${uploadId} is missing`);
    return data;
  };
  let next: Promise<Buffer> | undefined = fetchChunk(first);
  for (let seq = first; seq <= last; seq++) {
    const data: Buffer = await next!;
    next = seq < last ? fetchChunk(seq + 1) : undefined;
    next?.catch(() => {});
    yield data;
  }
}
