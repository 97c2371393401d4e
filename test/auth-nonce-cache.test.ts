// NonceCache: the replay memory of Hawk headers. A triple is refused while remembered and
// unexpired; entries expire at ts + ttl (at least a second after being seen); when full, the
// oldest go first; a triple seen again after it expired counts as new and as the newest. The age
// order is a list of its own (auth/age-ordered-map.ts), so these check its bookkeeping: stale
// places of re-added keys, eviction past them, and compaction.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NonceCache } from '../services/queue/src/auth/index.js';

const ttl = 900_000;
const t0 = 1_800_000_000_000;
const ts = (ms: number) => String(Math.floor(ms / 1000));

describe('NonceCache', () => {
  test('a triple is refused while remembered; other ids, nonces or timestamps are not', () => {
    const c = new NonceCache(10, ttl);
    assert.equal(c.checkAndAdd('a', 'n1', ts(t0), t0), true);
    assert.equal(c.checkAndAdd('a', 'n1', ts(t0), t0 + 5), false);
    assert.equal(c.checkAndAdd('b', 'n1', ts(t0), t0), true);
    assert.equal(c.checkAndAdd('a', 'n2', ts(t0), t0), true);
    assert.equal(c.checkAndAdd('a', 'n1', ts(t0 + 1000), t0), true);
    assert.equal(c.size, 4);
  });

  test('entries expire at ts + ttl and are swept; an expired triple is accepted again', () => {
    const c = new NonceCache(10, ttl);
    assert.equal(c.checkAndAdd('a', 'n', ts(t0), t0), true);
    assert.equal(c.checkAndAdd('a', 'n', ts(t0), t0 + ttl - 1), false);
    assert.equal(c.checkAndAdd('x', 'y', ts(t0 + ttl), t0 + ttl), true);
    assert.equal(c.size, 1, 'the expired entry was swept by the next call');
    assert.equal(c.checkAndAdd('a', 'n', ts(t0), t0 + ttl), true);
  });

  test('a ts that is not a number is remembered for a second', () => {
    const c = new NonceCache(10, ttl);
    assert.equal(c.checkAndAdd('a', 'n', 'abc', t0), true);
    assert.equal(c.checkAndAdd('a', 'n', 'abc', t0 + 999), false);
    assert.equal(c.checkAndAdd('a', 'n', 'abc', t0 + 1000), true);
  });

  test('when full the oldest entries go first, and a re-added triple counts as the newest', () => {
    const c = new NonceCache(3, ttl);
    // 'a' expires early (an old ts) behind 'b', which is not expired, so 'a' is not swept but
    // re-added: its first place is then stale
    assert.equal(c.checkAndAdd('b', 'n', ts(t0), t0), true);
    assert.equal(c.checkAndAdd('a', 'n', ts(t0 - ttl), t0), true);
    assert.equal(c.checkAndAdd('a', 'n', ts(t0 - ttl), t0 + 1000), true);
    assert.equal(c.checkAndAdd('c', 'n', ts(t0), t0 + 1000), true);
    assert.equal(c.size, 3);
    // full: adding 'd' drops the oldest live entry, 'b' (not 'a', whose old place is stale)
    assert.equal(c.checkAndAdd('d', 'n', ts(t0), t0 + 1000), true);
    assert.equal(c.size, 3);
    assert.equal(c.checkAndAdd('a', 'n', ts(t0 - ttl), t0 + 1500), false);
    assert.equal(c.checkAndAdd('c', 'n', ts(t0), t0 + 1500), false);
    assert.equal(c.checkAndAdd('d', 'n', ts(t0), t0 + 1500), false);
    assert.equal(c.checkAndAdd('b', 'n', ts(t0), t0 + 1500), true, "'b' was dropped, so it passes again");
    // adding 'b' dropped the next oldest live entry: 'a' (past its stale first place)
    assert.equal(c.checkAndAdd('c', 'n', ts(t0), t0 + 1500), false);
    assert.equal(c.checkAndAdd('a', 'n', ts(t0 - ttl), t0 + 1500), true);
  });

  test('stays exact and bounded over many entries (its list is compacted)', () => {
    const c = new NonceCache(1000, ttl);
    for (let i = 0; i < 20_000; i++) assert.equal(c.checkAndAdd('id', `n${i}`, ts(t0), t0 + i), true);
    assert.equal(c.size, 1000);
    for (let i = 19_000; i < 20_000; i++) assert.equal(c.checkAndAdd('id', `n${i}`, ts(t0), t0 + 20_000), false);
    assert.equal(c.checkAndAdd('id', 'n18999', ts(t0), t0 + 20_000), true, 'dropped when full, so accepted');
  });
});
