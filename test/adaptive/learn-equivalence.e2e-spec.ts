import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeLearn, learnScript, type LearnOp } from '../../src/adaptive/infrastructure/learn.script.js';
import type { Upstream429Type } from '../../src/adaptive/domain/classify-429.js';
import { LocalDb } from '../../src/state/local-db.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * The learning rule exists once as a decision (aimd.ts); it runs inside the atomic step, so the
 * Lua copy (learn.lua) must be the same function. This suite generates a wide grid of stored states
 * × events (429 of every kind, increases with and without slow start, reset, load) and runs every
 * case through the Lua in a real Redis and through the TypeScript half (LocalDb + aimd.ts), then
 * asserts the same reply and the same resulting state (both hashes, field by field, exactly). Times
 * are seeded relative to Redis' clock, ≥ 5 s away from every threshold; the TypeScript half runs at
 * the millisecond the script read (bracketed by TIME before and after it).
 */

// Deterministic PRNG (mulberry32): the same grid every run.
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

type Seed = { kh: Record<string, string>; ah: Record<string, string> };
interface Case {
  seed: Seed;
  op: LearnOp;
}

const CASES = 24_000;
const BATCH = 1_000;
const TYPES: Upstream429Type[] = ['concurrency', 'rpm', 'tpm', 'unknown'];

function history(t0: number, count: number): string {
  return Array.from(
    { length: count },
    (_, i) => `${t0 - (count - i) * 1000}|${i + 1}|${i + 2}|high_utilisation|${i}`,
  ).join(';');
}

/** One case: a stored state relative to t0 and an event. */
function makeCase(r: () => number, t0: number): Case {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const cur = pick([null, 1, 2, 3, 7, 8, 9, 15, 16, 31, 32, 33, 40, 50, 64, 99, 100] as const);
  const kh: Record<string, string> = {};
  const ah: Record<string, string> = {};
  if (cur !== null) {
    const where = pick(['both', 'both', 'adaptiveOnly'] as const); // KeyPool's hash expired
    if (where === 'both') kh.cl = String(cur);
    ah.ll = String(cur);
  }
  const eff = cur ?? 8;
  const bd = pick([null, null, null, 2, 3, eff, eff + 1, eff + 2, eff + 5, eff * 2 + 1, 41] as const);
  if (bd !== null) ah.bd = String(bd);
  for (const f of ['c', 'u', 'r', 't'] as const) {
    const v = pick([null, null, 0, 1, 3] as const);
    if (v !== null) ah[f] = String(v);
  }
  const time = (choices: readonly (number | null)[]) => {
    const off = pick(choices);
    return off === null ? null : String(t0 + off);
  };
  const sg = pick([null, null, null, Math.floor(eff / 2), 4, eff] as const); // before the last slow-start step
  if (sg !== null) ah.sg = String(sg);
  const hold = time([null, null, -10_000, 60_000]);
  if (hold) ah.hold = hold;
  const lc = time([null, -10_000, -400_000]);
  if (lc) ah.lc = lc;
  const lp = time([null, -10_000, -400_000]);
  if (lp) ah.lp = lp;
  const v = time([null, -30_000, -30_000, 50_000]);
  if (v) ah.v = v;
  const h = pick([0, 0, 3, 19, 20] as const);
  if (h > 0) ah.h = history(t0, h);
  if (r() < 0.3) Object.assign(ah, { l4: String(t0 - 20_000), lt: pick(TYPES) });

  const kind = r();
  let op: LearnOp;
  if (kind < 0.45) {
    op = {
      op: '429',
      type: pick(TYPES),
      inFlight: pick([0, 1, 2, eff - 1, eff, eff + 1, eff * 2 + 3, 41, 64]),
      learned: r() < 0.85,
      initial: pick([8, 8, 1, 20]),
      decreasePermille: pick([850, 850, 500, 990]),
      unknownPermille: pick([900, 900, 500]),
      holdMs: pick([0, 15_000]),
      minLimit: pick([1, 1, 3]),
    };
  } else if (kind < 0.93) {
    op = {
      op: 'inc',
      expected: pick([eff, eff, eff, eff - 1, eff + 1]),
      reason: pick(['high_utilisation', 'high_utilisation', 'probe'] as const),
      inFlight: pick([1, eff, eff + 1]),
      initial: 8,
      maxLimit: pick([100, 100, 40, 10]),
      probeIntervalMs: pick([300_000, 5_000]),
      slowStartPermille: pick([1000, 2000, 2000, 1500, 3000]),
    };
  } else if (kind < 0.96) {
    op = { op: 'reset' };
  } else {
    op = {
      op: 'load',
      version: t0 + pick([-60_000, 0, 80_000]),
      learned: pick([null, 4, 33]),
      c: pick([0, 2]),
      r: 1,
      t: 0,
      u: pick([0, 1]),
      l4: pick([null, t0 - 5000]),
      lt: pick([null, 'concurrency']),
      lc: pick([null, t0 - 7000]),
      bd: pick([null, 5]),
      lp: pick([null, t0 - 9000]),
      history: pick(['', history(t0, 2)]),
    };
  }
  return { seed: { kh, ah }, op };
}

/** Order-independent form of a step's outcome. */
const canon = (o: { reply: string[]; kh: Record<string, string>; ah: Record<string, string> }): string =>
  JSON.stringify([o.reply, Object.entries(o.kh).sort(), Object.entries(o.ah).sort()]);

const ms = (t: unknown): number => {
  const [sec, usec] = t as [string | number, string | number];
  return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
};

describe('adaptive-learn: Lua (Redis) ≡ TypeScript (aimd.ts) over a generated grid', () => {
  let client: Redis;
  const prefix = uniqueName('fgeq');
  let sha = '';

  beforeAll(async () => {
    client = new Redis(TEST_REDIS_URL);
    sha = (await client.script('LOAD', learnScript.lua)) as string;
  });
  afterAll(async () => {
    await dropRedisPrefix(prefix);
    client?.disconnect();
  });

  it(`${CASES} cases: same reply, same stored state`, async () => {
    const r = rng(14_5);
    const codes = new Map<string, number>();
    let compared = 0;
    for (let b = 0; b < CASES / BATCH; b++) {
      const [sec, usec] = (await client.time()) as unknown as [string | number, string | number];
      const t0 = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
      const cases = Array.from({ length: BATCH }, () => makeCase(r, t0));
      const keyOf = (i: number) =>
        [`${prefix}:kp:{eq}:k:${b}-${i}`, `${prefix}:ad:{eq}:k:${b}-${i}`] as const;

      // Redis: seed, then TIME / the script / TIME (the script's clock lies between the two),
      // read back — one pipeline per batch.
      const p = client.pipeline();
      cases.forEach((c, i) => {
        const [kh, ah] = keyOf(i);
        if (Object.keys(c.seed.kh).length) p.hset(kh, c.seed.kh);
        if (Object.keys(c.seed.ah).length) p.hset(ah, c.seed.ah);
        p.time();
        p.evalsha(sha, 2, kh, ah, ...encodeLearn(c.op));
        p.time();
        p.hgetall(kh);
        p.hgetall(ah);
      });
      const res = (await p.exec())!;
      let at = 0;
      cases.forEach((c) => {
        at += (Object.keys(c.seed.kh).length ? 1 : 0) + (Object.keys(c.seed.ah).length ? 1 : 0);
        const before = ms(res[at]![1]);
        const [err, reply] = res[at + 1]!;
        expect(err).toBeNull();
        const after = ms(res[at + 2]![1]);
        const lua = {
          reply: (reply as (string | number)[]).map(String),
          kh: res[at + 3]![1] as Record<string, string>,
          ah: res[at + 4]![1] as Record<string, string>,
        };
        at += 5;

        // TypeScript: the same seed in a fresh LocalDb, at each millisecond the script may have
        // read (almost always one); the outcome must equal the Lua's exactly at one of them.
        const runTs = (now: number) => {
          const db = new LocalDb();
          db.now = now;
          if (Object.keys(c.seed.kh).length) db.hset('kh', c.seed.kh);
          if (Object.keys(c.seed.ah).length) db.hset('ah', c.seed.ah);
          const out = learnScript.local(db, ['kh', 'ah'], encodeLearn(c.op).map(String), now);
          return { reply: out.map(String), kh: db.hgetall('kh'), ah: db.hgetall('ah') };
        };
        let ts = runTs(before);
        for (let now = before + 1; now <= after && canon(ts) !== canon(lua); now++) ts = runTs(now);
        expect(lua, JSON.stringify({ case: c, before, after })).toEqual(ts);
        const code = `${c.op.op}:${ts.reply[4]}${ts.reply[0] === '0' && ts.reply[4] === 'slow_start' ? '_refused' : ''}`;
        codes.set(code, (codes.get(code) ?? 0) + 1);
        if (code === '429:concurrency_429' && c.seed.ah.sg !== undefined && ts.reply[2] === c.seed.ah.sg)
          codes.set('429:ssthresh', (codes.get('429:ssthresh') ?? 0) + 1);
        compared++;
      });
      await client.del(...cases.flatMap((_, i) => keyOf(i)));
    }
    expect(compared).toBe(CASES);
    // The grid reaches every outcome of every operation.
    for (const code of [
      '429:concurrency_429',
      '429:ssthresh',
      '429:unknown_429',
      '429:no_change',
      '429:fixed',
      'inc:high_utilisation',
      'inc:slow_start',
      'inc:probe',
      'inc:stale',
      'inc:hold',
      'inc:max',
      'inc:boundary',
      'inc:quiet_period',
      'inc:slow_start_refused',
      'reset:reset',
      'load:loaded',
      'load:newer',
    ])
      expect(codes.get(code) ?? 0, code).toBeGreaterThan(20);
    console.log(
      `[learn equivalence] ${compared} cases equal; outcomes: ${[...codes].map(([k, v]) => `${k} ${v}`).join(', ')}`,
    );
  });
});
