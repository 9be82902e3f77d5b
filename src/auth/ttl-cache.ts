/**
 * A bounded map whose entries expire after `ttlMs`. Eviction is oldest-inserted first (a Map keeps
 * insertion order), which is O(1) and good enough for a few-second credential cache.
 *
 * With `keepStaleMs` > 0 an expired entry is kept that much longer: `get` no longer returns it, but
 * `getStale` does (with its age) — for callers that may fall back on a recent answer when the
 * source of truth cannot be asked.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; storedAt: number; expiresAt: number }>();

  constructor(
    readonly maxEntries: number,
    readonly ttlMs: number,
    private readonly now: () => number = Date.now,
    readonly keepStaleMs = 0,
  ) {}

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      if (entry.expiresAt + this.keepStaleMs <= this.now()) this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  /** The entry even if expired, while within `keepStaleMs` of its expiry; with its age (ms since set). */
  getStale(key: string): { value: V; ageMs: number } | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    const now = this.now();
    if (entry.expiresAt + this.keepStaleMs <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return { value: entry.value, ageMs: now - entry.storedAt };
  }

  set(key: string, value: V): void {
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
    const now = this.now();
    this.entries.set(key, { value, storedAt: now, expiresAt: now + this.ttlMs });
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  /** Removes every entry whose value matches (fresh or stale); returns how many. */
  deleteWhere(predicate: (value: V) => boolean): number {
    let removed = 0;
    for (const [key, entry] of this.entries) {
      if (predicate(entry.value)) {
        this.entries.delete(key);
        removed++;
      }
    }
    return removed;
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
