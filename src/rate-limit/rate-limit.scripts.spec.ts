import { describe, expect, it } from 'vitest';
import { LocalDb } from '../state/local-db.js';
import { requestPolicy, tokenBudgetPolicy, type Policy } from './policies.js';
import {
  ADMITTED,
  AdmissionScript,
  ChargeTokensScript,
  KIND_SLIDING_BUCKETS,
  REJECTED,
  STALE,
} from './rate-limit.scripts.js';

/**
 * The in-process halves of the scripts on a controlled clock: exact boundaries without timing
 * noise. The same cases against Redis and the in-process store, on the real clock, are in
 * test/rate-limit/scripts.e2e-spec.ts.
 */

let seq = 0;
function admit(
  db: LocalDb,
  now: number,
  policies: Policy[],
  opts: { dry?: boolean; deadline?: number } = {},
) {
  db.now = now;
  const keys = policies.flatMap((p) => p.keys);
  const args = [`m${++seq}`, String(opts.deadline ?? 0), opts.dry ? '1' : '0', String(policies.length)];
  for (const p of policies)
    args.push(
      String(p.kind),
      String(p.limit),
      String(p.windowMs),
      String(p.burst),
      String(opts.dry ? 0 : p.cost),
    );
  const r = AdmissionScript.local(db, keys, args, now);
  return {
    status: r[0],
    policies: policies.map((_, i) => ({
      admitted: r[2 + i * 5] === 1,
      remaining: r[3 + i * 5],
      current: r[4 + i * 5],
      resetMs: r[5 + i * 5],
      retryMs: r[6 + i * 5],
    })),
  };
}

const T0 = 1_700_000_000_000;

describe('sliding window (exact log)', () => {
  const sw = requestPolicy('key', 'sliding_window', 3, 1000, 0, 'key:a');

  it('admits exactly `limit` in any window and frees a slot exactly `window` ms after each admission', () => {
    const db = new LocalDb();
    expect(admit(db, T0, [sw]).status).toBe(ADMITTED);
    expect(admit(db, T0 + 100, [sw]).status).toBe(ADMITTED);
    const third = admit(db, T0 + 200, [sw]);
    expect(third.policies[0]).toMatchObject({ admitted: true, remaining: 0, current: 3, resetMs: 800 });
    const refused = admit(db, T0 + 999, [sw]);
    expect(refused.status).toBe(REJECTED);
    expect(refused.policies[0]).toMatchObject({ admitted: false, current: 3, retryMs: 1 });
    expect(admit(db, T0 + 1000, [sw]).status).toBe(ADMITTED); // the T0 entry left the window
    expect(admit(db, T0 + 1099, [sw]).policies[0]!.retryMs).toBe(1);
    expect(admit(db, T0 + 1100, [sw]).status).toBe(ADMITTED);
  });

  it('rejected requests consume nothing: a client hammering while limited gets in at the first free slot', () => {
    const db = new LocalDb();
    for (let i = 0; i < 3; i++) expect(admit(db, T0, [sw]).status).toBe(ADMITTED);
    for (let t = T0 + 1; t < T0 + 1000; t += 7) expect(admit(db, t, [sw]).status).toBe(REJECTED);
    for (let i = 0; i < 3; i++) expect(admit(db, T0 + 1000, [sw]).status).toBe(ADMITTED);
    expect(admit(db, T0 + 1000, [sw]).status).toBe(REJECTED);
  });

  it('same-millisecond requests are separate members', () => {
    const db = new LocalDb();
    for (let i = 0; i < 3; i++) admit(db, T0, [sw]);
    expect(db.zcard('rl:{key:a}:key:sw')).toBe(3);
  });
});

describe('token bucket (GCRA)', () => {
  const tb = requestPolicy('chat', 'token_bucket', 10, 1000, 5, 'key:a', true); // 10/s, burst 5

  it('admits the burst at once, then one request per interval (100 ms)', () => {
    const db = new LocalDb();
    const burst = Array.from({ length: 8 }, () => admit(db, T0, [tb]).status);
    expect(burst.filter((s) => s === ADMITTED)).toHaveLength(5);
    const refused = admit(db, T0, [tb]);
    expect(refused.policies[0]).toMatchObject({ admitted: false, remaining: 0, retryMs: 100 });
    expect(admit(db, T0 + 99, [tb]).status).toBe(REJECTED);
    expect(admit(db, T0 + 100, [tb]).status).toBe(ADMITTED);
    expect(admit(db, T0 + 100, [tb]).status).toBe(REJECTED);
    // over 10 s of continuous demand exactly 10/s are admitted
    let admitted = 0;
    for (let t = T0 + 101; t <= T0 + 10_100; t++) if (admit(db, t, [tb]).status === ADMITTED) admitted++;
    expect(admitted).toBe(100);
  });

  it('refills to the burst and never above it; reports remaining and the next refill', () => {
    const db = new LocalDb();
    admit(db, T0, [tb]);
    admit(db, T0, [tb]);
    const state = admit(db, T0 + 50, [tb], { dry: true });
    expect(state.policies[0]).toMatchObject({ remaining: 3, current: 2, resetMs: 50 });
    const full = admit(db, T0 + 10_000, [tb], { dry: true });
    expect(full.policies[0]).toMatchObject({ remaining: 5, current: 0, resetMs: 0 });
    const burst = Array.from({ length: 7 }, () => admit(db, T0 + 10_000, [tb]).status);
    expect(burst.filter((s) => s === ADMITTED)).toHaveLength(5);
  });
});

describe('several policies: all or nothing', () => {
  it('a refusal by one policy consumes nothing in the others', () => {
    const db = new LocalDb();
    const a = requestPolicy('a', 'sliding_window', 2, 1000, 0, 'x');
    const b = requestPolicy('b', 'sliding_window', 5, 1000, 0, 'x');
    const c = requestPolicy('c', 'token_bucket', 5, 1000, 5, 'x');
    const results = Array.from({ length: 5 }, () => admit(db, T0, [a, b, c]));
    expect(results.map((r) => r.status)).toEqual([ADMITTED, ADMITTED, REJECTED, REJECTED, REJECTED]);
    expect(results[2]!.policies.map((p) => p.admitted)).toEqual([false, true, true]);
    expect(admit(db, T0, [b, c], { dry: true }).policies.map((p) => p.current)).toEqual([2, 2]);
    expect(Array.from({ length: 4 }, () => admit(db, T0, [b, c]).status)).toEqual([
      ADMITTED,
      ADMITTED,
      ADMITTED,
      REJECTED,
    ]);
  });
});

describe('token budget (TPM)', () => {
  it('refuses while usage in the window is at or over the budget, until enough old charges expire', () => {
    const db = new LocalDb();
    const budget = { ...tokenBudgetPolicy(100, 'key:a'), windowMs: 1000 };
    const [log, sum] = budget.keys as [string, string];
    const charge = (now: number, tokens: number, member: string) => {
      db.now = now;
      return ChargeTokensScript.local(db, [log, sum], [member, String(tokens), '1000'], now);
    };
    expect(admit(db, T0, [budget]).status).toBe(ADMITTED);
    expect(charge(T0, 60, 'c1')).toEqual([60, T0]);
    expect(charge(T0 + 300, 50, 'c2')).toEqual([110, T0 + 300]);
    const refused = admit(db, T0 + 400, [budget]);
    expect(refused.policies[0]).toMatchObject({ admitted: false, current: 110, remaining: 0, retryMs: 600 });
    expect(admit(db, T0 + 999, [budget]).status).toBe(REJECTED);
    const back = admit(db, T0 + 1000, [budget]);
    expect(back.policies[0]).toMatchObject({ admitted: true, current: 50, remaining: 50 });
    expect(admit(db, T0 + 1300, [budget], { dry: true }).policies[0]).toMatchObject({
      current: 0,
      remaining: 100,
    });
    expect(db.get(sum)).toBeNull();
  });
});

describe('deadline', () => {
  it('a script that runs after its deadline changes nothing', () => {
    const db = new LocalDb();
    const sw = requestPolicy('key', 'sliding_window', 3, 1000, 0, 'key:a');
    expect(admit(db, T0, [sw], { deadline: T0 - 1 }).status).toBe(STALE);
    expect(db.zcard('rl:{key:a}:key:sw')).toBe(0);
    expect(admit(db, T0, [sw], { deadline: T0 }).status).toBe(ADMITTED);
  });
});

describe('sliding window above SLIDING_EXACT_MAX: sub-buckets (local half, controlled clock)', () => {
  it('refused at the limit; retry when the oldest bucket leaves (≤ 1 bucket after the exact log); reset; one hash', () => {
    const db = new LocalDb();
    const sb = { ...requestPolicy('key', 'sliding_window', 1500, 60_000, 0, 'key:b'), cost: 1000 };
    expect(sb.kind).toBe(KIND_SLIDING_BUCKETS);
    const t0 = 1_800_000_000_300; // 300 ms into a 1 s bucket
    expect(admit(db, t0, [sb]).status).toBe(ADMITTED);
    const half = { ...sb, cost: 500 };
    const second = admit(db, t0 + 10_000, [half]);
    expect(second.status).toBe(ADMITTED);
    // reset: when the oldest bucket (t0's) leaves the window: its end + 60 s
    expect(second.policies[0]).toMatchObject({ current: 1500, remaining: 0, resetMs: 50_700 });
    const one = { ...sb, cost: 1 };
    // the exact log would admit at t0 + 60 000 (40 000 ms from now); the buckets at t0's bucket end + 60 s
    const refused = admit(db, t0 + 20_000, [one]);
    expect(refused.status).toBe(REJECTED);
    expect(refused.policies[0]).toMatchObject({ admitted: false, current: 1500, retryMs: 40_700 });
    expect(admit(db, t0 + 60_699, [one]).status).toBe(REJECTED);
    const freed = admit(db, t0 + 60_700, [one]);
    expect(freed.status).toBe(ADMITTED);
    expect(freed.policies[0]).toMatchObject({ current: 501, remaining: 999 });
    // one hash: the two live buckets, the sum, lo and the bucket size — no log
    const b = (t: number) => String(Math.floor(t / 1000));
    expect(db.hgetall(sb.keys[0]!)).toEqual({
      [b(t0 + 10_000)]: '500',
      [b(t0 + 60_700)]: '1',
      s: '501',
      lo: b(t0 + 10_000),
      b: '1000',
    });
    expect(sb.keys).toEqual(['rl:{key:b}:key:sb']);
  });
});

describe('exact logs: lazy trim and the renew-on-trim TTL (issue 18)', () => {
  /** A deterministic generator (mulberry32). */
  function rng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  it('the log never expires with an entry in its window: counts equal a reference log over random gaps (bursts, pauses around window + slack, 2 × window)', () => {
    const W = 10_000;
    const sw = requestPolicy('key', 'sliding_window', 40, W, 0, 'key:ttl');
    const budget = { ...tokenBudgetPolicy(1_000_000, 'key:ttl'), windowMs: W };
    const r = rng(18);
    const db = new LocalDb();
    const admitted: number[] = [];
    const charged: [number, number][] = [];
    let now = T0;
    let trims = 0;
    for (let i = 0; i < 5000; i++) {
      // gaps chosen around the rule's edges: the slack (W/60), the window, window + slack, 2 windows
      now += [1, 7, 150, W - 200, W + 100, W + 170, 2 * W + 160, 2 * W + 300][Math.floor(r() * 8)]!;
      if (r() < 0.3) now += Math.floor(r() * 400);
      const before = db.zcard(sw.keys[0]!);
      const d = admit(db, now, [sw, budget]);
      if (db.zcard(sw.keys[0]!) < before) trims++;
      const inWindow = admitted.filter((t) => t > now - W).length;
      const used = charged.filter(([t]) => t > now - W).reduce((a, [, n]) => a + n, 0);
      expect(d.policies[1]!.current, `budget at step ${i}`).toBe(used);
      if (inWindow + 1 <= 40) {
        expect(d.status, `step ${i}`).toBe(ADMITTED);
        expect(d.policies[0]!.current, `step ${i}`).toBe(inWindow + 1);
        admitted.push(now);
        const n = 1 + Math.floor(r() * 50);
        db.now = now;
        ChargeTokensScript.local(db, budget.keys, [`c${i}`, String(n), String(W)], now);
        charged.push([now, n]);
      } else {
        expect(d.status, `step ${i}`).toBe(REJECTED);
        expect(d.policies[0]!.current, `step ${i}`).toBe(inWindow);
      }
    }
    expect(trims).toBeGreaterThan(50);
  });
});
