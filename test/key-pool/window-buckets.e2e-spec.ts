import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BUCKET_MS,
  LUA_WINDOW_BUCKETS,
  WINDOW_BUCKETS,
  wbAdd,
  wbReady,
  wbSum,
} from '../../src/key-pool/infrastructure/window-buckets.js';
import { WINDOW_MS } from '../../src/key-pool/infrastructure/key-selection.script.js';
import { LocalDb } from '../../src/state/local-db.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * The sub-bucket window's documented error bound (window-buckets.ts), checked against the exact
 * sliding log it replaces, on both halves (the Lua in a real Redis, driven with explicit times, and
 * the LocalDb twin), which must also agree with each other:
 *   exact(now − WINDOW, now]  ≤  buckets(now)  ≤  exact(now − WINDOW − BUCKET, now]
 * (it counts exactly what was charged since the start of the oldest bucket still in the window), and
 * the time a refused window frees is at most one bucket after the exact log's.
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

const LUA_OP = `${LUA_WINDOW_BUCKETS}
local now = tonumber(ARGV[2])
if ARGV[1] == 'add' then fg_wb_add(KEYS[1], now, tonumber(ARGV[3])) return 0 end
local sum = fg_wb_sum(KEYS[1], now)
local limit = tonumber(ARGV[3])
if sum >= limit then return {sum, fg_wb_ready(KEYS[1], now, sum, limit)} end
return {sum, 0}
`;

describe('sub-bucket window: error bound against the exact log; Lua ≡ TypeScript', () => {
  let client: Redis;
  const prefix = uniqueName('fgwb');
  let sha = '';
  beforeAll(async () => {
    client = new Redis(TEST_REDIS_URL);
    sha = (await client.script('LOAD', LUA_OP)) as string;
  });
  afterAll(async () => {
    await dropRedisPrefix(prefix);
    client?.disconnect();
  });

  it.each([1, 2, 3])(
    'random charges over 10 minutes (seed %i): within the bound, both halves equal',
    async (seed) => {
      const r = rng(seed * 7919);
      const key = `${prefix}:w${seed}`;
      const db = new LocalDb();
      const log: [number, number][] = []; // the exact log: [time, amount]
      let now = 1_800_000_000_000 + Math.floor(r() * 100_000);
      const end = now + 600_000;
      const exact = (from: number, to: number) =>
        log.filter(([t]) => t > from && t <= to).reduce((s, [, v]) => s + v, 0);
      let checked = 0;
      let refused = 0;
      let inexact = 0;
      while (now < end) {
        // bursts and pauses: steps from 1 ms to 20 s, so buckets are skipped and windows empty out
        now += Math.floor(r() < 0.05 ? r() * 20_000 : r() * 700) + 1;
        const amount = 1 + Math.floor(r() * 900);
        await client.evalsha(sha, 1, key, 'add', now, amount);
        db.now = now;
        wbAdd(db, key, now, amount);
        log.push([now, amount]);

        const at = now + Math.floor(r() * 400);
        const limit = 1000 + Math.floor(r() * 40_000);
        const lua = (await client.evalsha(sha, 1, key, 'sum', at, limit)) as [number, number];
        db.now = at;
        const sum = wbSum(db, key, at);
        const ready = sum >= limit ? wbReady(db, key, at, sum, limit) : 0;
        expect(lua).toEqual([sum, ready]);
        expect(await client.hgetall(key)).toEqual(db.hgetall(key));

        const lo = exact(at - WINDOW_MS, at);
        const hi = exact(at - WINDOW_MS - BUCKET_MS, at);
        // exactly: everything since the start of the oldest bucket in the window
        expect(sum).toBe(exact((Math.floor(at / BUCKET_MS) - WINDOW_BUCKETS) * BUCKET_MS - 1, at));
        expect(sum).toBeGreaterThanOrEqual(lo);
        expect(sum).toBeLessThanOrEqual(hi);
        if (sum !== lo) inexact++;
        if (sum >= limit) {
          refused++;
          // the exact log frees when enough of its oldest charges are 60 s old
          let left = lo;
          let exactReady = at;
          for (const [t, v] of log.filter(([t]) => t > at - WINDOW_MS)) {
            if (left < limit) break;
            left -= v;
            exactReady = t + WINDOW_MS;
          }
          expect(ready).toBeGreaterThan(at);
          expect(ready).toBeGreaterThanOrEqual(exactReady);
          expect(ready - exactReady).toBeLessThanOrEqual(BUCKET_MS);
        }
        checked++;
        now = at; // one clock for both operations, never going back (Redis TIME)
      }
      // the walk reached both the exact and the inexact cases, and refusals
      expect(checked).toBeGreaterThan(300);
      expect(refused).toBeGreaterThan(20);
      expect(inexact).toBeGreaterThan(20);
      expect(checked - inexact).toBeGreaterThan(20);
      // bounded size: only buckets still in the window (+ s and lo) remain
      expect(Object.keys(db.hgetall(key)).length).toBeLessThanOrEqual(WINDOW_BUCKETS + 1 + 2);
    },
    120_000,
  );
});
