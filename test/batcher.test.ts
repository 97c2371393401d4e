// The batcher coalesces calls that arrive while its lanes are busy, settles each item on its own,
// and runs every item alone again when a whole batch fails.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Batcher, type Outcome } from '../services/queue/src/db/batcher.js';

function deferred() {
  let release!: () => void;
  const done = new Promise<void>((r) => (release = r));
  return { done, release };
}

describe('Batcher', () => {
  it('serves the first call alone and gathers the calls that arrive while the lane is busy', async () => {
    const gate = deferred();
    const seen: number[][] = [];
    const b = new Batcher<number, number>(async (items) => {
      seen.push(items);
      if (seen.length === 1) await gate.done;
      return items.map((i) => ({ ok: true, value: i * 10 }));
    }, { maxBatch: 3, lanes: 1 });
    const first = b.submit(1);
    await new Promise((r) => setImmediate(r));
    const rest = [2, 3, 4, 5].map((i) => b.submit(i));
    gate.release();
    assert.deepEqual(await Promise.all([first, ...rest]), [10, 20, 30, 40, 50]);
    assert.deepEqual(seen, [[1], [2, 3, 4], [5]]);
    assert.deepEqual(b.stats, { batches: 3, items: 5, fallbacks: 0 });
  });

  it('settles each item with its own outcome', async () => {
    const b = new Batcher<number, number>(async (items) =>
      items.map((i): Outcome<number> => (i % 2 ? { ok: true, value: i } : { ok: false, error: new Error(`even ${i}`) })), { maxBatch: 10, lanes: 1 });
    const results = await Promise.allSettled([1, 2, 3].map((i) => b.submit(i)));
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((results[1] as PromiseRejectedResult).reason), /even 2/);
  });

  it('runs each item alone when a whole batch throws, so only the bad item fails', async () => {
    const calls: number[][] = [];
    const b = new Batcher<number, number>(async (items) => {
      calls.push(items);
      if (items.includes(13)) throw new Error('unlucky');
      return items.map((i) => ({ ok: true, value: i }));
    }, { maxBatch: 10, lanes: 1 });
    const results = await Promise.allSettled([12, 13, 14].map((i) => b.submit(i)));
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.deepEqual(calls, [[12, 13, 14], [12], [13], [14]]);
    assert.equal(b.stats.fallbacks, 1);
  });

  it('keeps at most `lanes` batches in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const b = new Batcher<number, number>(async (items) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight -= 1;
      return items.map((i) => ({ ok: true, value: i }));
    }, { maxBatch: 2, lanes: 2 });
    await Promise.all(Array.from({ length: 20 }, (_, i) => b.submit(i)));
    assert.equal(most, 2);
  });
});
