import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMITTED,
  AdmissionScript,
  KIND_SLIDING_BUCKETS,
  KIND_SLIDING_WINDOW,
  KIND_TOKEN_BUCKET,
  KIND_TOKEN_BUDGET,
  RollbackScript,
  SUB_BUCKETS,
  subBucketMs,
} from '../../src/rate-limit/rate-limit.scripts.js';
import { RedisAtomicStore } from '../../src/state/atomic-store.js';
import { LocalDb } from '../../src/state/local-db.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * `rate-limit-rollback` (Redis Cluster: undoes a committed per-subject step when a later subject
 * refuses) exists twice: Lua in Redis and its TypeScript twin over LocalDb. Like the admission
 * equivalence suite, this generates stored states (sliding windows holding the request's member(s)
 * or not, token buckets ahead of the clock by a few intervals or behind it, token budgets), runs
 * every case through both, and asserts the same reply and the same resulting state key by key. The
 * TypeScript half runs at the millisecond the script read (its reply carries it); token-bucket
 * TATs are seeded half an interval away from every boundary, so µs (Lua) vs ms × 1000 (TypeScript)
 * clocks decide the same. Sub-bucket windows (a limit above SLIDING_EXACT_MAX) are seeded with
 * buckets around the admission's time (ARGV[2]): the admission's bucket holding the cost, less, or
 * nothing, the admission long enough ago that its bucket left the window, or a hash of another
 * bucket size. Then admission + rollback round trips: a sliding window comes back to exactly its
 * state before the admission (a sub-bucket window: the same count in every bucket); a token
 * bucket's TAT moves back by interval·cost, never below now.
 */

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CASES = 600;
const WINDOW = 60_000;

interface Case {
  zsets: Map<string, [number, string][]>;
  strings: Map<string, string>;
  hashes: Map<string, Record<string, string>>;
  keys: string[];
  args: (string | number)[];
  buckets: Set<string>;
}

function makeCase(r: () => number, t0: number, tag: string): Case {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const member = `m-${tag}`;
  const c: Case = {
    zsets: new Map(),
    strings: new Map(),
    hashes: new Map(),
    keys: [],
    args: [],
    buckets: new Set(),
  };
  const n = int(1, 4);
  // the admission's time (the rollback's ARGV[2]): moments ago, or so long ago its bucket left
  const at = pick([t0 - int(0, 500), t0 - int(0, 3_000), t0 - WINDOW - 2_000]);
  c.args.push(member, at, 0, n);
  for (let j = 0; j < n; j++) {
    const kind = pick([
      KIND_SLIDING_WINDOW,
      KIND_SLIDING_WINDOW,
      KIND_SLIDING_BUCKETS,
      KIND_SLIDING_BUCKETS,
      KIND_TOKEN_BUCKET,
      KIND_TOKEN_BUDGET,
    ]);
    const key = `rl:{s:${tag}}:p${j}`;
    if (kind === KIND_SLIDING_BUCKETS) {
      const cost = pick([1, 1, 2]);
      const window = pick([WINDOW, WINDOW, 6_000]);
      const bms = subBucketMs(window);
      const own = Math.floor(at / bms);
      const h: Record<string, string> = {};
      let s = 0;
      // other buckets in the window, and the admission's: the cost, less (partly given back), none
      for (let i = 0; i < int(0, 3); i++) {
        const id = Math.floor(t0 / bms) - int(0, SUB_BUCKETS);
        const v = int(1, 900);
        h[String(id)] = String(Number(h[String(id)] ?? 0) + v);
        s += v;
      }
      const mine = pick([cost, cost, cost + int(1, 50), 1, 0]);
      if (mine > 0) {
        h[String(own)] = String(Number(h[String(own)] ?? 0) + mine);
        s += mine;
      }
      if (s > 0) {
        const ids = Object.keys(h).map(Number);
        h.s = String(s);
        h.lo = String(Math.min(...ids));
        h.b = String(pick([bms, bms, bms, bms + 7])); // another bucket size: another window's hash
        c.hashes.set(key, h);
      }
      c.keys.push(key);
      c.args.push(kind, int(1001, 5000), window, 0, cost);
    } else if (kind === KIND_SLIDING_WINDOW) {
      const cost = pick([1, 1, 2]);
      const entries: [number, string][] = Array.from({ length: int(0, 3) }, (_, i) => [
        t0 - int(1_000, 50_000),
        `other${i}`,
      ]);
      // the request's own member(s): all, only the first, or none (already rolled back: idempotent)
      const own = pick([cost, cost, 1, 0]);
      for (let i = 1; i <= own; i++) entries.push([t0 - int(0, 500), i > 1 ? `${member}:${i}` : member]);
      if (entries.length > 0) c.zsets.set(key, entries);
      c.keys.push(key);
      c.args.push(kind, int(1, 5), WINDOW, 0, cost);
    } else if (kind === KIND_TOKEN_BUCKET) {
      const limit = 10; // interval 6 s
      const interval = (WINDOW * 1000) / limit;
      const cost = pick([0, 1, 1, 2]);
      const k = pick([null, -2, -1, 0, 1, 2, 3]);
      if (k !== null) c.strings.set(key, String(t0 * 1000 + k * interval + interval / 2));
      c.keys.push(key);
      c.buckets.add(key);
      c.args.push(kind, limit, WINDOW, int(1, 3), cost);
    } else {
      const sum = `${key}:sum`;
      c.zsets.set(key, [[t0 - int(1_000, 50_000), `c0:${int(1, 900)}`]]);
      c.strings.set(sum, '450');
      c.keys.push(key, sum);
      c.args.push(kind, 1000, WINDOW, 1000, 0);
    }
  }
  return c;
}

describe('rate-limit-rollback: Lua and its LocalDb twin', () => {
  let redis: Redis;
  let store: RedisAtomicStore;
  const prefix = uniqueName('fgrb');

  beforeAll(() => {
    redis = new Redis(TEST_REDIS_URL);
    store = new RedisAtomicStore(redis, prefix);
  });
  afterAll(async () => {
    await dropRedisPrefix(prefix);
    redis?.disconnect();
  });

  const full = (k: string) => `${prefix}:${k}`;

  async function seed(c: Case, db: LocalDb): Promise<void> {
    const m = redis.multi();
    for (const [key, entries] of c.zsets) {
      for (const [score, member] of entries) {
        m.zadd(full(key), score, member);
        db.zadd(key, score, member);
      }
      m.pexpire(full(key), WINDOW);
      db.pexpire(key, WINDOW);
    }
    for (const [key, value] of c.strings) {
      m.set(full(key), value, 'PX', WINDOW);
      db.set(key, value, WINDOW);
    }
    for (const [key, fields] of c.hashes) {
      m.hset(full(key), fields);
      m.pexpire(full(key), 2 * WINDOW);
      db.hset(key, fields);
      db.pexpire(key, 2 * WINDOW);
    }
    await m.exec();
  }

  async function state(c: Case, db: LocalDb) {
    const keys = c.keys;
    const lua: Record<string, unknown> = {};
    const local: Record<string, unknown> = {};
    for (const key of keys) {
      const type = await redis.type(full(key));
      if (type === 'zset') {
        const flat = await redis.zrange(full(key), 0, -1, 'WITHSCORES');
        const pairs: [string, number][] = [];
        for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i]!, Number(flat[i + 1])]);
        lua[key] = pairs;
      } else if (type === 'string') lua[key] = await redis.get(full(key));
      else if (type === 'hash') lua[key] = await redis.hgetall(full(key));
      else lua[key] = null;
      if (c.hashes.has(key)) {
        const h = db.hgetall(key);
        local[key] = Object.keys(h).length > 0 ? h : null;
        continue;
      }
      // Redis deletes a sorted set that becomes empty; LocalDb may keep it (both read as empty)
      const v = db.get(key) as unknown;
      if (v === null || typeof v === 'string') local[key] = v;
      else local[key] = db.zcard(key) > 0 ? db.zrange(key, 0, -1).map((e) => [e.member, e.score]) : null;
    }
    return { lua, local };
  }

  it(`${CASES} generated cases: same reply, same state`, { timeout: 120_000 }, async () => {
    const r = rng(18);
    let undoneTotal = 0;
    let sbGiven = 0;
    let sbKept = 0;
    for (let i = 0; i < CASES; i++) {
      const db = new LocalDb();
      const t0 = Number((await redis.time())[0]) * 1000;
      db.now = t0;
      const c = makeCase(r, t0, `${i}`);
      await seed(c, db);
      const reply = await store.run(RollbackScript, c.keys, c.args);
      const nowMs = reply[1]!;
      db.now = nowMs;
      const twin = RollbackScript.local(db, c.keys, c.args.map(String), nowMs);
      expect(twin, `case ${i}`).toEqual(reply);
      undoneTotal += reply[0]!;
      const { lua, local } = await state(c, db);
      expect(local, `case ${i}: ${JSON.stringify(c.args)}`).toEqual(lua);
      for (const [key, seeded] of c.hashes) {
        const after = lua[key] as Record<string, string> | null;
        if (after?.s === seeded.s) sbKept++;
        else sbGiven++;
      }
    }
    // sub-bucket windows: some given back, some left alone (bucket gone, other size, nothing in it)
    expect(sbGiven).toBeGreaterThan(CASES / 20);
    expect(sbKept).toBeGreaterThan(CASES / 20);
    // the generator reaches the interesting paths (not every case a no-op)
    expect(undoneTotal).toBeGreaterThan(CASES / 2);
  });

  it('admission then rollback: a sliding window is back to its state before; a bucket moves back by interval·cost, never below now', async () => {
    const tag = `rt-${Date.now()}`;
    const sw = `rl:{s:${tag}}:sw`;
    const tb = `rl:{s:${tag}}:tb`;
    const interval = 100_000; // µs: 10 per second
    await redis.zadd(full(sw), Date.now() - 1000, 'earlier');
    const ahead = (Number((await redis.time())[0]) * 1000 + 5_000) * 1000; // 5 s ahead: 50 intervals
    await redis.set(full(tb), String(ahead), 'PX', 60_000);
    const args = [
      `m-${tag}`,
      0,
      0,
      2,
      KIND_SLIDING_WINDOW,
      5,
      WINDOW,
      5,
      2,
      KIND_TOKEN_BUCKET,
      10,
      1000,
      100,
      3,
    ];
    const admitted = await store.run(AdmissionScript, [sw, tb], args);
    expect(admitted[0]).toBe(ADMITTED);
    expect(await redis.zcard(full(sw))).toBe(3);
    expect(Number(await redis.get(full(tb)))).toBe(ahead + 3 * interval);
    expect((await store.run(RollbackScript, [sw, tb], args))[0]).toBe(3);
    expect(await redis.zrange(full(sw), 0, -1)).toEqual(['earlier']);
    expect(Number(await redis.get(full(tb)))).toBe(ahead);
    // a second rollback: the sliding window is unchanged (idempotent), the bucket moves again
    expect((await store.run(RollbackScript, [sw, tb], args))[0]).toBe(1);
    expect(await redis.zrange(full(sw), 0, -1)).toEqual(['earlier']);
    expect(Number(await redis.get(full(tb)))).toBe(ahead - 3 * interval);
    // a bucket less than interval·cost ahead of now is full after the rollback: no key left
    const near = (Number((await redis.time())[0]) * 1000 + 2_000) * 1000;
    await redis.set(full(tb), String(near), 'PX', 60_000);
    const big = [`m2-${tag}`, 0, 0, 1, KIND_TOKEN_BUCKET, 10, 1000, 100, 50]; // 5 s back
    expect((await store.run(RollbackScript, [tb], big))[0]).toBe(1);
    expect(await redis.exists(full(tb))).toBe(0);
  });

  it('admission then rollback on a sub-bucket window: every bucket and the sum back to their counts before', async () => {
    const tag = `sb-${Date.now()}`;
    const sb = `rl:{s:${tag}}:sb`;
    const bms = subBucketMs(WINDOW);
    const args = (member: string, at: number) => [
      member,
      at,
      0,
      1,
      KIND_SLIDING_BUCKETS,
      5000,
      WINDOW,
      5000,
      2,
    ];
    // an earlier request, then ours; the rollback carries our admission's time (its reply's now_ms)
    const first = await store.run(AdmissionScript, [sb], args(`a-${tag}`, 0));
    expect(first[0]).toBe(ADMITTED);
    const counts = (h: Record<string, string>) =>
      Object.fromEntries(Object.entries(h).filter(([f, v]) => f !== 'lo' && f !== 'b' && v !== '0'));
    const before = counts(await redis.hgetall(full(sb)));
    expect(before.s).toBe('2');
    const ours = await store.run(AdmissionScript, [sb], args(`b-${tag}`, 0));
    expect(ours[0]).toBe(ADMITTED);
    expect(ours[4]).toBe(4); // current
    expect((await redis.hgetall(full(sb))).s).toBe('4');
    expect((await store.run(RollbackScript, [sb], args(`b-${tag}`, ours[1]!)))[0]).toBe(2);
    expect(counts(await redis.hgetall(full(sb)))).toEqual(before);
    // the next admission counts 2 + its own 2
    const next = await store.run(AdmissionScript, [sb], args(`c-${tag}`, 0));
    expect(next[4]).toBe(4);
    // a rollback whose admission's bucket has left the window gives nothing back
    const old = Math.floor(next[1]! / bms) * bms - WINDOW - 2 * bms;
    expect((await store.run(RollbackScript, [sb], args(`c-${tag}`, old)))[0]).toBe(0);
    expect((await redis.hgetall(full(sb))).s).toBe('4');
  });
});
