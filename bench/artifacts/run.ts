// bench/artifacts: upload (PUT putUrl) and download (GET the 303's URL) throughput of s3 artifacts
// stored in PostgreSQL, against the queue service running as its own process, with that process's
// peak RSS growth during each transfer. The baselines, measured in this process on the same
// database without HTTP, are the ceilings the service works under: PostgreSQL taking 1 MiB bytea
// INSERTs one at a time (the upload path), and the service's own COPY read path (BlobReader) over
// the largest blob (the download path).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import taskcluster from 'taskcluster-client';
import { createTestDatabase } from '../../test/harness/db.js';
import { claimedRunOn, httpRequest, pattern } from '../../test/harness/artifacts.js';
import { BlobReader } from '../../services/queue/src/artifacts/blob-reader.js';
import { machineBusySec, memoryMb, postgresCpuSec, processCpuSec } from '../lifecycle/procstat.js';
import { startService, type RunningService } from '../lifecycle/service.js';

const { values: opt } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1,100' },
    repeat: { type: 'string', default: '3' },
    'small-repeat': { type: 'string', default: '30' },
    chunk: { type: 'string' },
    pool: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  process.stdout.write(`node --import tsx bench/artifacts/run.ts [options]
  --sizes a,b        blob sizes in MiB (1,100)
  --repeat N         transfers per size of 10 MiB and more; the best and median are shown (3)
  --small-repeat N   transfers per size under 10 MiB (30)
  --chunk BYTES      ARTIFACT_CHUNK_BYTES of the service (its default, 1 MiB)
  --pool N           DB_POOL_SIZE of the service
`);
  process.exit(0);
}

const MiB = 1024 * 1024;
const mbps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Transfer {
  ms: number;
  growthMb: number;
  serviceCpu: number;
  pgCpu: number;
  /** CPU seconds of this process, the client */
  clientCpu: number;
  /** CPU seconds used by everything else on the machine */
  otherCpu: number;
}

async function measured(svc: RunningService, database: string, fn: () => Promise<void>): Promise<Transfer> {
  const rss = memoryMb(svc.pid).rssMb;
  writeFileSync(`/proc/${svc.pid}/clear_refs`, '5'); // VmHWM := current RSS
  const cpu0 = processCpuSec(svc.pid);
  const pg0 = postgresCpuSec(database);
  const busy0 = machineBusySec();
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  const serviceCpu = processCpuSec(svc.pid) - cpu0;
  const pgCpu = postgresCpuSec(database) - pg0;
  const c = process.cpuUsage(client0);
  const clientCpu = (c.user + c.system) / 1e6;
  const otherCpu = machineBusySec() - busy0 - serviceCpu - pgCpu - clientCpu;
  return { ms, growthMb: memoryMb(svc.pid).peakMb - rss, serviceCpu, pgCpu, clientCpu, otherCpu };
}

/** PostgreSQL alone, in this process: 1 MiB bytea INSERTs one at a time into a scratch table. */
async function baselineInsert(url: string, bytes: number): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('CREATE TEMP TABLE bench_chunks (seq int PRIMARY KEY, data bytea)');
    await client.query('ALTER TABLE bench_chunks ALTER COLUMN data SET STORAGE EXTERNAL');
    const chunk = Buffer.concat([...pattern(MiB, 7)]);
    const n = Math.ceil(bytes / MiB);
    const t = performance.now();
    for (let i = 0; i < n; i++) await client.query('INSERT INTO bench_chunks VALUES ($1, $2)', [i, chunk]);
    return mbps(n * MiB, performance.now() - t);
  } finally {
    await client.end();
  }
}

/** The service's own read path (COPY per chunk, BlobReader) over a stored blob, in this process: no HTTP. */
async function baselineRead(url: string, name: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const { rows } = await client.query('SELECT upload_id, chunk_bytes, size FROM artifact_uploads WHERE name = $1 AND completed IS NOT NULL', [name]);
  await client.end();
  const { upload_id: uploadId, chunk_bytes: chunkBytes, size } = rows[0] as { upload_id: string; chunk_bytes: number; size: string };
  const reader = new BlobReader(url, 4);
  try {
    const t = performance.now();
    let n = 0;
    for await (const piece of reader.read(uploadId, chunkBytes, 0, Number(size) - 1)) n += piece.length;
    return mbps(n, performance.now() - t);
  } finally {
    await reader.close();
  }
}

async function main() {
  const database = await createTestDatabase();
  const env: Record<string, string> = { CONVEYOR_LOOPS: 'false' };
  if (opt.chunk) env.ARTIFACT_CHUNK_BYTES = opt.chunk;
  if (opt.pool) env.DB_POOL_SIZE = opt.pool;
  const svc = await startService({ databaseUrl: database.url, env });
  try {
    const { queue, worker, taskId } = await claimedRunOn(svc.rootUrl, svc.credentials);
    const expires = taskcluster.fromNowJSON('1 day');
    let serial = 0;

    const once = async (bytes: number) => {
      const name = `public/bench/${serial++}.bin`;
      const { putUrl } = await worker.createArtifact(taskId, 0, name, { storageType: 's3', expires, contentType: 'application/octet-stream' });
      let etag: string | undefined;
      const up = await measured(svc, database.name, async () => {
        const r = await httpRequest(putUrl, { method: 'PUT', headers: { 'content-length': bytes }, body: pattern(bytes) });
        if (r.status !== 200) throw new Error(`upload answered ${r.status}: ${r.body.toString()}`);
        etag = String(r.headers.etag);
      });
      const { url } = await queue.getArtifact(taskId, 0, name);
      let sha: string | undefined;
      const down = await measured(svc, database.name, async () => {
        const r = await httpRequest(url, { hash: true });
        if (r.status !== 200 || r.length !== bytes) throw new Error(`download answered ${r.status} with ${r.length} bytes`);
        sha = r.sha256;
      });
      if (etag !== `"${sha}"`) throw new Error('the downloaded bytes differ from the uploaded ones');
      return { up, down, name };
    };

    await once(4 * MiB); // warm-up: module loading and JIT are not what is measured
    const sizes = opt.sizes.split(',').map(Number);
    const lines: string[] = [];
    let largest = '';
    for (const sizeMb of sizes) {
      const bytes = sizeMb * MiB;
      const n = Number(sizeMb < 10 ? opt['small-repeat'] : opt.repeat);
      const runs = [];
      for (let i = 0; i < n; i++) runs.push(await once(bytes));
      if (sizeMb === Math.max(...sizes)) largest = runs[0]!.name;
      for (const dir of ['up', 'down'] as const) {
        const rates = runs.map((r) => mbps(bytes, r[dir].ms));
        const growth = Math.max(...runs.map((r) => r[dir].growthMb));
        const cpu = runs.reduce((a, r) => a + r[dir].serviceCpu, 0) / n;
        const pgCpu = runs.reduce((a, r) => a + r[dir].pgCpu, 0) / n;
        const other = runs.reduce((a, r) => a + r[dir].otherCpu, 0) / n;
        const client = runs.reduce((a, r) => a + r[dir].clientCpu, 0) / n;
        const ms = runs.map((r) => r[dir].ms);
        lines.push(
          `${String(sizeMb).padStart(4)} MiB ${dir === 'up' ? 'upload  ' : 'download'}  median ${median(rates).toFixed(0).padStart(4)} MB/s  ` +
            `best ${Math.max(...rates).toFixed(0).padStart(4)} MB/s  median ${median(ms).toFixed(0).padStart(5)} ms  ` +
            `peak RSS growth ${growth.toFixed(1).padStart(5)} MB  CPU/transfer: service ${cpu.toFixed(2)} s, postgres ${pgCpu.toFixed(2)} s, ` +
            `client ${client.toFixed(2)} s, other ${other.toFixed(2)} s  (n=${n})`,
        );
      }
    }
    const base = { insert: await baselineInsert(database.url, Math.max(...sizes) * MiB), read: await baselineRead(database.url, largest) };
    process.stdout.write(`\nbench/artifacts (MB = MiB; chunk ${opt.chunk ?? 'default 1048576'} bytes; service pid ${svc.pid})\n`);
    process.stdout.write(
      `baseline in this process, no HTTP: PostgreSQL INSERT of 1 MiB rows ${base.insert.toFixed(0)} MB/s; ` +
        `the service's COPY read path over the largest blob ${base.read.toFixed(0)} MB/s\n`,
    );
    for (const l of lines) process.stdout.write(l + '\n');
    const big = lines.filter((l) => l.startsWith(String(Math.max(...sizes)).padStart(4)));
    process.stdout.write(`ratio to baseline at ${Math.max(...sizes)} MiB: ${big.map((l) => l.match(/(upload|download)\s+median\s+(\d+)/)!).map((m) => `${m[1]} ${(Number(m[2]) / (m[1] === 'upload' ? base.insert : base.read)).toFixed(2)}`).join(', ')}\n`);
  } finally {
    await svc.stop();
    await database.drop();
  }
}

await main();
