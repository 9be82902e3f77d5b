import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMITTED,
  CLIENT_LIMITS_LUA,
  clientEvaluate,
  clientReply,
  KIND_SLIDING_BUCKETS,
  SUB_BUCKETS,
  subBucketMs,
} from '../../src/rate-limit/rate-limit.scripts.js';
import { LocalDb } from '../../src/state/local-db.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * The client sliding window of sub-buckets (kind 4, a limit above SLIDING_EXACT_MAX) against the
 * exact log it replaces, with its documented error bound (rate-limit.scripts.ts), on both halves —
 * client-limits.lua in a real Redis driven with an explicit clock (the library's evaluate/reply
 * with `now` from ARGV instead of Redis TIME) and the LocalDb twin — which must also agree with each
 * other (reply and stored hash, every step). With bms = window / 60:
 *   - the count is exactly what was admitted since the start of the oldest bucket in the window,
 *     so exact(now − window, now] ≤ count ≤ exact(now − window − bms, now];
 *   - never over the limit: after every admission, exact(now − window, now] ≤ limit;
 *   - a refusal the exact log would not make is one the log would make one bucket earlier
 *     (exact(now − window − bms, now] + cost > limit);
 *   - the retry time is never before the exact log's, and at most one bucket after it.
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

// ARGV[1] = now_ms, then the admission's own ARGV (member, deadline, dry_run, n, policies…)
const LUA_AT = `${CLIENT_LIMITS_LUA}
local now_ms = tonumber(ARGV[1])
local st = fg_client_evaluate(KEYS, ARGV, now_ms, now_ms * 1000, 0, 1)
return fg_client_reply(st, st.all_ok and not st.dry)
`;

describe('client sub-bucket window: error bound against the exact log; Lua ≡ TypeScript', () => {
  let client: Redis;
  const prefix = uniqueName('fgsb');
  let sha = '';
  beforeAll(async () => {
    client = new Redis(TEST_REDIS_URL);
    sha = (await client.script('LOAD', LUA_AT)) as string;
  });
  afterAll(async () => {
    await dropRedisPrefix(prefix);
    client?.disconnect();
  });

  it.each([
    [1, 60_000],
    [2, 60_000],
    [3, 6_000],
  ])(
    'bursts and pauses (seed %i, window %i ms): within the bound, never over the limit, both halves equal',
    async (seed, window) => {
      const r = rng(seed * 104_729);
      const bms = subBucketMs(window);
      const key = `${prefix}:rl:{s${seed}}:p:sb`;
      const db = new LocalDb();
      const admitted: [number, number][] = []; // the exact log: [time, cost]
      const exact = (from: number, to: number) =>
        admitted.filter(([t]) => t > from && t <= to).reduce((s, [, c]) => s + c, 0);
      let now = 1_800_000_000_000 + Math.floor(r() * 100_000);
      const limit = 1001 + Math.floor(r() * 2000);
      const seen = { steps: 0, admitted: 0, refused: 0, early: 0, inexact: 0 };
      for (let step = 0; step < 1500; step++) {
        // steps from 1 ms to ~1/6 of a window, sometimes longer than the window (it empties)
        const jump = r() < 0.004 ? window + r() * window : r() * (window / 150);
        now += Math.floor(jump) + 1;
        const cost = 1 + Math.floor(r() * 60);
        const args = [
          `m${step}`,
          '0',
          '0',
          '1',
          String(KIND_SLIDING_BUCKETS),
          String(limit),
          String(window),
          String(limit),
          String(cost),
        ];
        const lua = (await client.evalsha(sha, 1, key, String(now), ...args)) as number[];
        db.now = now;
        const st = clientEvaluate(db, [key], args, now);
        const twin = clientReply(db, st, st.allOk);
        expect(lua, `step ${step}`).toEqual(twin);
        expect(await client.hgetall(key)).toEqual(db.hgetall(key));

        const [status, , ok, remaining, current, reset, retry] = lua as [
          number,
          number,
          number,
          number,
          number,
          number,
          number,
        ];
        const before = current - (status === ADMITTED ? cost : 0); // the count the decision saw
        const lo = exact(now - window, now);
        const hi = exact(now - window - bms, now);
        expect(before).toBe(exact((Math.floor(now / bms) - SUB_BUCKETS) * bms - 1, now));
        expect(before).toBeGreaterThanOrEqual(lo);
        expect(before).toBeLessThanOrEqual(hi);
        if (before !== lo) seen.inexact++;
        if (status === ADMITTED) {
          expect(ok).toBe(1);
          admitted.push([now, cost]);
          seen.admitted++;
          // never over the limit over any window-long interval ending now
          expect(exact(now - window, now)).toBeLessThanOrEqual(limit);
        } else {
          seen.refused++;
          expect(ok).toBe(0);
          expect(lo + cost > limit || hi + cost > limit).toBe(true);
          if (lo + cost <= limit) seen.early++;
          // the exact log admits once enough of its oldest entries are `window` old
          let left = lo;
          let exactReady = now;
          for (const [t, c] of admitted.filter(([t]) => t > now - window)) {
            if (left + cost <= limit) break;
            left -= c;
            exactReady = t + window;
          }
          expect(retry).toBeGreaterThan(0);
          expect(now + retry).toBeGreaterThanOrEqual(exactReady);
          expect(now + retry - exactReady).toBeLessThanOrEqual(bms);
        }
        expect(remaining).toBe(Math.max(0, limit - current));
        // reset: when the oldest bucket leaves the window (it frees places then), within a window + bucket
        if (current > 0) {
          expect(reset).toBeGreaterThan(0);
          expect(reset).toBeLessThanOrEqual(window + bms);
        }
        seen.steps++;
      }
      // the walk reached refusals (early ones too), admissions, exact and inexact counts
      expect(seen.admitted).toBeGreaterThan(100);
      expect(seen.refused).toBeGreaterThan(20);
      expect(seen.early).toBeGreaterThan(0);
      expect(seen.inexact).toBeGreaterThan(20);
      // bounded size: only buckets still in the window (+ s, lo, b)
      expect(Object.keys(db.hgetall(key)).length).toBeLessThanOrEqual(SUB_BUCKETS + 1 + 3);
    },
    120_000,
  );
});
