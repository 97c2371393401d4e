// A 50 MB artifact through a service running as its own process: the bytes that come back hash the
// same as those sent, and the service's peak RSS (VmHWM, reset before the transfer) stays far below
// the blob's size, because neither direction buffers the blob.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { startService, type RunningService } from '../bench/lifecycle/service.js';
import { memoryMb } from '../bench/lifecycle/procstat.js';
import { claimedRunOn, httpRequest, inOneHour, pattern, sha256Of } from './harness/artifacts.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';

const size = 50 * 1024 * 1024;
const maxGrowthMb = 40;

describe('a 50 MB artifact', () => {
  let database: TestDatabase;
  let service: RunningService;
  before(async () => {
    database = await createTestDatabase();
    service = await startService({ databaseUrl: database.url, env: { CONVEYOR_LOOPS: 'false' } });
  });
  after(async () => {
    await service?.stop();
    await database?.drop();
  });

  /** Peak RSS growth of the service over `fn`, in MB. */
  async function peakGrowthMb(fn: () => Promise<void>): Promise<number> {
    const before = memoryMb(service.pid).rssMb;
    writeFileSync(`/proc/${service.pid}/clear_refs`, '5'); // reset VmHWM to the current RSS
    await fn();
    return memoryMb(service.pid).peakMb - before;
  }

  it('uploads and downloads with matching bytes while the service memory stays flat', async () => {
    const { queue, worker, taskId } = await claimedRunOn(service.rootUrl, service.credentials);
    const { putUrl } = await worker.createArtifact(taskId, 0, 'public/big.bin', { storageType: 's3', expires: inOneHour(), contentType: 'application/octet-stream' });
    // warm up the code paths once, so the measurement is of the transfer, not of loading modules
    const warm = await worker.createArtifact(taskId, 0, 'public/warm.bin', { storageType: 's3', expires: inOneHour(), contentType: 'x/y' });
    await httpRequest(warm.putUrl, { method: 'PUT', body: pattern(3 * 1024 * 1024) });
    await httpRequest((await queue.getArtifact(taskId, 0, 'public/warm.bin')).url, { hash: true });

    let put: Awaited<ReturnType<typeof httpRequest>> | undefined;
    const upGrowth = await peakGrowthMb(async () => {
      put = await httpRequest(putUrl, { method: 'PUT', headers: { 'content-length': size }, body: pattern(size) });
    });
    assert.equal(put!.status, 200, put!.body.toString());
    const expected = sha256Of(pattern(size));
    assert.equal(put!.headers.etag, `"${expected}"`);

    const { url } = await queue.getArtifact(taskId, 0, 'public/big.bin');
    let got: Awaited<ReturnType<typeof httpRequest>> | undefined;
    const downGrowth = await peakGrowthMb(async () => {
      got = await httpRequest(url, { hash: true });
    });
    assert.equal(got!.status, 200);
    assert.equal(got!.length, size);
    assert.equal(got!.sha256, expected);

    assert.ok(upGrowth < maxGrowthMb, `upload grew the service's peak RSS by ${upGrowth.toFixed(1)} MB`);
    assert.ok(downGrowth < maxGrowthMb, `download grew the service's peak RSS by ${downGrowth.toFixed(1)} MB`);
  });
});
