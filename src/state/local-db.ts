/**
 * A tiny in-process stand-in for the slice of Redis that Floodgate's atomic scripts use (strings,
 * hashes, sorted sets, expiry). Scripts' `local` halves run against it synchronously, so each one is
 * atomic by construction, exactly like a Lua script on a single Redis.
 */
interface Entry<T> {
  value: T;
  expiresAt: number | undefined;
}

export class SortedSet {
  private readonly items: { score: number; member: string }[] = [];
  private readonly scores = new Map<string, number>();

  get size(): number {
    return this.items.length;
  }

  /** Index of the first item with (score, member) ≥ the given pair. */
  private lowerBound(score: number, member = ''): number {
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const it = this.items[mid]!;
      if (it.score < score || (it.score === score && it.member < member)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  add(score: number, member: string): number {
    const existed = this.remove(member);
    this.items.splice(this.lowerBound(score, member), 0, { score, member });
    this.scores.set(member, score);
    return existed ? 0 : 1;
  }

  remove(member: string): boolean {
    const score = this.scores.get(member);
    if (score === undefined) return false;
    const idx = this.lowerBound(score, member);
    this.items.splice(idx, 1);
    this.scores.delete(member);
    return true;
  }

  score(member: string): number | undefined {
    return this.scores.get(member);
  }

  count(min: number, max: number): number {
    const start = this.lowerBound(min);
    let n = 0;
    for (let i = start; i < this.items.length && this.items[i]!.score <= max; i++) n++;
    return n;
  }

  removeRangeByScore(min: number, max: number): number {
    const start = this.lowerBound(min);
    let end = start;
    while (end < this.items.length && this.items[end]!.score <= max) end++;
    for (let i = start; i < end; i++) this.scores.delete(this.items[i]!.member);
    this.items.splice(start, end - start);
    return end - start;
  }

  /** The lowest item (ZRANGE key 0 0's only entry) without a copy; undefined when empty. Read-only. */
  first(): { readonly score: number; readonly member: string } | undefined {
    return this.items[0];
  }

  /** Items by rank, inclusive, negative indexes from the end (ZRANGE semantics). */
  range(start: number, stop: number): { score: number; member: string }[] {
    const n = this.items.length;
    const s = start < 0 ? Math.max(n + start, 0) : start;
    const e = stop < 0 ? n + stop : Math.min(stop, n - 1);
    return s > e ? [] : this.items.slice(s, e + 1);
  }
}

export class LocalDb {
  private readonly data = new Map<string, Entry<unknown>>();
  private sweepTimer: NodeJS.Timeout | undefined;
  /** The script's clock; set by the store before each run so one script sees one instant. */
  now = Date.now();

  startSweeping(intervalMs = 10_000): void {
    this.sweepTimer = setInterval(() => this.sweep(), intervalMs);
    this.sweepTimer.unref();
  }

  stopSweeping(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
  }

  sweep(): void {
    const now = Date.now();
    for (const [k, e] of this.data) if (e.expiresAt !== undefined && e.expiresAt <= now) this.data.delete(k);
  }

  private entry<T>(key: string): Entry<T> | undefined {
    const e = this.data.get(key) as Entry<T> | undefined;
    if (e && e.expiresAt !== undefined && e.expiresAt <= this.now) {
      this.data.delete(key);
      return undefined;
    }
    return e;
  }

  private upsert<T>(key: string, make: () => T): Entry<T> {
    let e = this.entry<T>(key);
    if (!e) {
      e = { value: make(), expiresAt: undefined };
      this.data.set(key, e as Entry<unknown>);
    }
    return e;
  }

  exists(key: string): boolean {
    return this.entry(key) !== undefined;
  }

  del(...keys: string[]): number {
    let n = 0;
    for (const k of keys) if (this.entry(k) && this.data.delete(k)) n++;
    return n;
  }

  pexpire(key: string, ms: number): void {
    const e = this.entry(key);
    if (e) e.expiresAt = this.now + ms;
  }

  /** Remaining ms, -1 without expiry, -2 when missing (PTTL semantics). */
  pttl(key: string): number {
    const e = this.entry(key);
    if (!e) return -2;
    return e.expiresAt === undefined ? -1 : e.expiresAt - this.now;
  }

  get(key: string): string | null {
    const e = this.entry<string>(key);
    return e ? e.value : null;
  }

  set(key: string, value: string, pxMs?: number): void {
    this.data.set(key, { value, expiresAt: pxMs === undefined ? undefined : this.now + pxMs });
  }

  incrby(key: string, by: number): number {
    const e = this.upsert<string>(key, () => '0');
    const next = Number(e.value) + by;
    e.value = String(next);
    return next;
  }

  hget(key: string, field: string): string | null {
    return this.entry<Map<string, string>>(key)?.value.get(field) ?? null;
  }

  hset(key: string, values: Record<string, string | number>): void {
    const e = this.upsert(key, () => new Map<string, string>());
    for (const [f, v] of Object.entries(values)) e.value.set(f, String(v));
  }

  hincrby(key: string, field: string, by: number): number {
    const e = this.upsert(key, () => new Map<string, string>());
    const next = Number(e.value.get(field) ?? '0') + by;
    e.value.set(field, String(next));
    return next;
  }

  hdel(key: string, field: string): void {
    this.entry<Map<string, string>>(key)?.value.delete(field);
  }

  hgetall(key: string): Record<string, string> {
    const e = this.entry<Map<string, string>>(key);
    return e ? Object.fromEntries(e.value) : {};
  }

  zset(key: string): SortedSet | undefined {
    return this.entry<SortedSet>(key)?.value;
  }

  zadd(key: string, score: number, member: string): number {
    return this.upsert(key, () => new SortedSet()).value.add(score, member);
  }

  zrem(key: string, member: string): number {
    return this.zset(key)?.remove(member) ? 1 : 0;
  }

  zcard(key: string): number {
    return this.zset(key)?.size ?? 0;
  }

  zcount(key: string, min: number, max: number): number {
    return this.zset(key)?.count(min, max) ?? 0;
  }

  zremrangebyscore(key: string, min: number, max: number): number {
    return this.zset(key)?.removeRangeByScore(min, max) ?? 0;
  }

  zrange(key: string, start: number, stop: number): { score: number; member: string }[] {
    return this.zset(key)?.range(start, stop) ?? [];
  }

  /** `zrange(key, 0, 0)[0]` without the array: the lowest entry, or undefined. Read-only. */
  zfirst(key: string): { readonly score: number; readonly member: string } | undefined {
    return this.zset(key)?.first();
  }

  zscore(key: string, member: string): number | null {
    return this.zset(key)?.score(member) ?? null;
  }
}
