// A Map whose entries leave oldest first (bounded caches: replayed nonces, certificate HMACs).
//
// The age order is a list of its own rather than the Map's insertion order: a Map iterated from
// the front after many deletions skips every deleted slot up to its next rehash, which cost some
// 50 µs per request once a 50,000-entry cache was full and dropped one entry per insert.
export class AgeOrderedMap<V> {
  /** key → value and its place in `order` (an older place of the same key is stale) */
  private readonly entries = new Map<string, { value: V; seq: number }>();
  /** keys oldest first; order[i] has sequence number base + i; those before `head` are gone */
  private order: string[] = [];
  private base = 0;
  private head = 0;

  get size(): number {
    return this.entries.size;
  }

  get(key: string): V | undefined {
    return this.entries.get(key)?.value;
  }

  /** Sets `key` as the newest entry, whether or not it was there before. */
  set(key: string, value: V): void {
    this.entries.set(key, { value, seq: this.base + this.order.length });
    this.order.push(key);
    // drop the places already passed once they are most of the list
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.base += this.head;
      this.head = 0;
    }
  }

  /** The oldest entry's key, passing over stale places. */
  oldestKey(): string | undefined {
    while (this.head < this.order.length) {
      const key = this.order[this.head]!;
      if (this.entries.get(key)?.seq === this.base + this.head) return key;
      this.head += 1;
    }
    return undefined;
  }

  deleteOldest(): void {
    const key = this.oldestKey();
    if (key === undefined) return;
    this.entries.delete(key);
    this.head += 1;
  }

  clear(): void {
    this.entries.clear();
    this.order = [];
    this.base = 0;
    this.head = 0;
  }
}
