import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BreakerOp, BreakerRules } from '../../src/routing/domain/breaker.js';
import { breakerScript, encodeBreaker } from '../../src/routing/infrastructure/breaker.script.js';
import { LocalDb } from '../../src/state/local-db.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * The breaker's rule exists once as a decision (stepBreaker, domain/breaker.ts); it runs inside the
 * atomic step, so the Lua copy (breaker.lua) must be the same function. A generated grid of stored
 * records × events (failures, probes, immediate and batched successes, claims, reads) runs through
 * the Lua in a real Redis and through the TypeScript half (LocalDb + stepBreaker); the replies and
 * the stored hashes (and whether a TTL was set) must be equal. Times are seeded relative to Redis'
 * clock, ≥ 5 s away from every threshold, except the exact-boundary cases, where the TypeScript
 * runs at each millisecond the script may have read (bracketed by TIME before and after it).
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

const CASES = 12_000;
const BATCH = 1_000;

interface Case {
  seed: Record<string, string>;
  op: BreakerOp;
  rules: BreakerRules;
}

function makeCase(r: () => number, t0: number): Case {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const rules: BreakerRules = {
    consecutiveFailures: pick([1, 3, 5]),
    failureRatePermille: pick([250, 500, 1000]),
    minRequests: pick([1, 5, 20]),
    windowMs: pick([10_000, 30_000]),
    openMs: pick([5_000, 30_000]),
  };
  const seed: Record<string, string> = {};
  if (r() > 0.1) {
    const s = pick([0, 0, 1, 2, 2]);
    seed.s = String(s);
    seed.cf = String(pick([0, 1, 2, 4, 5, 9]));
    const ws = pick([null, t0 - 1_000, t0 - 60_000]);
    if (ws !== null) seed.ws = String(ws);
    const wr = pick([0, 3, 4, 19, 40]);
    seed.wr = String(wr);
    seed.wf = String(Math.min(wr, pick([0, 1, 2, 5, 10, 20])));
    if (s !== 0) seed.ou = String(t0 + pick([-60_000, -10_000, 20_000]));
    if (s === 1) seed.pu = String(t0 + pick([-10_000, 20_000]));
    const lf = pick([null, t0 - 2_000, t0 - 20_000]);
    if (lf !== null) seed.lf = String(lf);
    seed.v = String(pick([0, 1, 7]));
  }
  const k = r();
  let op: BreakerOp;
  if (k < 0.3) op = { op: 'fail', probe: r() < 0.4 };
  else if (k < 0.55) op = { op: 'ok', probe: r() < 0.4 };
  else if (k < 0.7) op = { op: 'add', n: pick([0, 1, 7]), lastMs: t0 + pick([-30_000, -10_000, 0]) };
  else if (k < 0.9) op = { op: 'claim', claimMs: pick([1_000, 30_000]) };
  else if (k < 0.95) op = { op: 'release', token: seed.pu !== undefined && r() < 0.7 ? Number(seed.pu) : t0 };
  else op = { op: 'get' };
  return { seed, op, rules };
}

const ms = (t: unknown): number => {
  const [sec, usec] = t as [string | number, string | number];
  return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
};

describe('routing-breaker: Lua (Redis) ≡ TypeScript (stepBreaker) over a generated grid', () => {
  let client: Redis;
  const prefix = uniqueName('fgbrk');
  let sha = '';

  beforeAll(async () => {
    client = new Redis(TEST_REDIS_URL);
    sha = (await client.script('LOAD', breakerScript.lua)) as string;
  });
  afterAll(async () => {
    await dropRedisPrefix(prefix);
    client?.disconnect();
  });

  it(`${CASES} cases: same reply, same stored record`, async () => {
    const r = rng(15_4);
    const outcomes = new Map<string, number>();
    let compared = 0;
    for (let b = 0; b < CASES / BATCH; b++) {
      const t0 = ms(await client.time());
      const cases = Array.from({ length: BATCH }, () => makeCase(r, t0));
      const keyOf = (i: number) => `${prefix}:brk:{eq}:m-${b}-${i}`;
      const p = client.pipeline();
      cases.forEach((c, i) => {
        if (Object.keys(c.seed).length) p.hset(keyOf(i), c.seed);
        p.time();
        p.evalsha(sha, 1, keyOf(i), ...encodeBreaker(c.op, c.rules));
        p.time();
        p.hgetall(keyOf(i));
        p.pttl(keyOf(i));
      });
      const res = (await p.exec())!;
      let at = 0;
      cases.forEach((c) => {
        at += Object.keys(c.seed).length ? 1 : 0;
        const before = ms(res[at]![1]);
        const [err, reply] = res[at + 1]!;
        expect(err).toBeNull();
        const after = ms(res[at + 2]![1]);
        const lua = {
          reply: (reply as (string | number)[]).map(String),
          hash: res[at + 3]![1] as Record<string, string>,
          ttl: (res[at + 4]![1] as number) > 0,
        };
        at += 5;
        const runTs = (now: number) => {
          const db = new LocalDb();
          db.now = now;
          if (Object.keys(c.seed).length) db.hset('k', c.seed);
          const out = breakerScript.local(db, ['k'], encodeBreaker(c.op, c.rules).map(String), now);
          return { reply: out.map(String), hash: db.hgetall('k'), ttl: db.pttl('k') > 0 };
        };
        const canon = (o: typeof lua) => JSON.stringify([o.reply, Object.entries(o.hash).sort(), o.ttl]);
        let ts = runTs(before);
        for (let now = before + 1; now <= after && canon(ts) !== canon(lua); now++) ts = runTs(now);
        expect(lua, JSON.stringify({ case: c, before, after })).toEqual(ts);
        const released =
          c.op.op === 'release' && ts.hash.pu === '0' && c.seed.pu !== '0' && c.seed.pu !== undefined;
        const outcome = `${c.op.op}:${ts.reply[9] || '-'}:${ts.reply[10] || '-'}${released ? ':released' : ''}`;
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        compared++;
      });
      await client.del(...cases.map((_, i) => keyOf(i)));
    }
    expect(compared).toBe(CASES);
    // every transition and answer is reached
    for (const o of [
      'fail:open:-',
      'fail:-:-',
      'ok:closed:-',
      'ok:-:-',
      'add:-:-',
      'claim:half_open:probe',
      'claim:-:probe',
      'claim:-:deny',
      'claim:-:allow',
      'release:-:-',
      'release:-:-:released',
      'get:-:-',
    ])
      expect(outcomes.get(o) ?? 0, o).toBeGreaterThan(20);
  });
});
