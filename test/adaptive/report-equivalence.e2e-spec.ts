import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LearnOp } from '../../src/adaptive/infrastructure/learn.script.js';
import {
  ADAPTIVE_REPORT,
  decodeReport,
  encodeReport,
  type RetreatArgs,
} from '../../src/adaptive/infrastructure/report.script.js';
import type { Upstream429Type } from '../../src/adaptive/domain/classify-429.js';
import {
  decodeRelease,
  encodeRelease,
  encodeReleaseBatch,
  releaseScript,
  type ReleaseResult,
} from '../../src/key-pool/infrastructure/release.script.js';
import { BUCKET_MS, WINDOW_BUCKETS } from '../../src/key-pool/infrastructure/window-buckets.js';
import { TOKEN_CHARGE_STEP } from '../../src/rate-limit/rate-limit.service.js';
import type { ScriptValue } from '../../src/state/atomic-store.js';
import { LocalDb } from '../../src/state/local-db.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * The answer path in one atomic step: KeyPool's release (release.lua / localRelease) with Adaptive's
 * report contribution composed in (report.lua + learn.lua / localReport + localLearn), and the
 * plain release without it. Randomised stored states (key hash, rpm/tpm/inf sets, the provider's
 * retreat hash and window, the key's learning hash) × answers (tokens, cooldown, not sent, success,
 * 429 of every kind, an increase) run through the Lua in a real Redis and through the TypeScript
 * half; the reply and every stored key (values, scores, whether it has a TTL and roughly which)
 * must be equal. Times are seeded relative to Redis' clock; the TypeScript half runs at each
 * millisecond the script may have read (bracketed by TIME before and after it).
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

type Hash = Record<string, string>;
type ZSet = [number, string][];
interface Seed {
  hk: Hash;
  rk: ZSet;
  tk: ZSet;
  /** The TPM window as sub-buckets (window-buckets.ts), used instead of tk when the case's tpmBuckets. */
  tb: Hash;
  /** The RPM window as sub-buckets, used instead of rk when the case's rpmAt is set. */
  rb: Hash;
  ik: ZSet;
  rt: Hash;
  rw: Hash;
  ah: Hash;
  /** The rider (the client key's token budget): its log, and its sum (null: missing). */
  cl: ZSet;
  cs: string | null;
}
interface Case {
  providerId: string;
  keyId: string;
  leaseId: string;
  seed: Seed;
  tokens: number;
  cooldownMs: number;
  notSent: boolean;
  /** The key's TPM window is the sub-bucket hash (a large max_tpm or none), not the exact log. */
  tpmBuckets: boolean;
  /** The key's RPM window is the sub-bucket hash; the lease was acquired at this time (else null). */
  rpmAt: number | null;
  /** null: the plain release (no contribution). */
  report: { answers: number; rate429s: number; retreat: RetreatArgs; learn: LearnOp | null } | null;
  /** The client key's token charge riding in the release (null: none). */
  charge: { tokens: number; member: string } | null;
}

const CASES = 6_000;
const BATCH = 500;
const TYPES: Upstream429Type[] = ['concurrency', 'rpm', 'tpm', 'unknown'];

function makeCase(r: () => number, t0: number, providerId: string): Case {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const leaseId = `lease-${int(1, 1e9)}`;
  const seed: Seed = {
    hk: {},
    rk: [],
    tk: [],
    tb: {},
    rb: {},
    ik: [],
    rt: {},
    rw: {},
    ah: {},
    cl: [],
    cs: null,
  };
  // the rider's budget log: empty, in the window, less than the trim slack (1 s) out of it, further
  let charge: Case['charge'] = null;
  if (r() < 0.5) {
    charge = { tokens: int(1, 5000), member: `m-${int(1, 1e9)}` };
    let csum = 0;
    for (let i = 0, n = pick([0, 1, 3] as const); i < n; i++) {
      const tokens = int(1, 900);
      // (less than the slack out: close to the window's edge, so a batch that runs late still has them)
      const at = t0 - pick([int(100, 50_000), int(60_020, 60_300), int(61_100, 90_000)] as const);
      seed.cl.push([at, `c-${i}:${tokens}`]);
      csum += tokens;
    }
    const csKind = pick(['sum', 'sum', 'sum', 'none'] as const);
    if (csKind === 'sum' && (seed.cl.length > 0 || r() < 0.3)) seed.cs = String(csum);
  }

  // KeyPool's key state
  if (r() < 0.9) seed.hk.lu = String(int(1, 1000));
  const cd = pick([null, null, -5000, 20_000, 200_000] as const);
  if (cd !== null) seed.hk.cd = String(t0 + cd);
  const learned = pick([null, 2, 5, 8, 9, 16, 40] as const);
  if (learned !== null && r() < 0.8) seed.hk.cl = String(learned);
  if (r() < 0.5) seed.rk.push([t0 - int(0, 30_000), leaseId]);
  for (let i = 0, n = int(0, 4); i < n; i++) seed.rk.push([t0 - int(0, 70_000), `other-${i}`]);
  // TPM log: in and out of the window (some right at its edge); ts consistent or drifted
  let sum = 0;
  for (let i = 0, n = pick([0, 0, 1, 3, 8] as const); i < n; i++) {
    const tokens = int(1, 900);
    const at = t0 - pick([int(0, 50_000), int(55_000, 65_000), int(61_000, 200_000)] as const);
    seed.tk.push([at, `t-${i}:${tokens}`]);
    sum += tokens;
  }
  const tsKind = pick(['sum', 'sum', 'sum', 'none', 'drift', 'negative'] as const);
  if (tsKind === 'sum' && (seed.tk.length > 0 || r() < 0.3)) seed.hk.ts = String(sum);
  else if (tsKind === 'drift') seed.hk.ts = String(sum + int(1, 500));
  else if (tsKind === 'negative') seed.hk.ts = String(-int(1, 50));
  // TPM sub-buckets: in the window, at its edge, long gone; s and lo consistent, drifted or missing
  const tpmBuckets = r() < 0.5;
  const bid = Math.floor(t0 / BUCKET_MS);
  let bsum = 0;
  let blo: number | null = null;
  for (let i = 0, n = pick([0, 0, 1, 3, 8] as const); i < n; i++) {
    const id = bid - pick([0, 0, 1, 5, WINDOW_BUCKETS - 1, WINDOW_BUCKETS, WINDOW_BUCKETS + 1, 200] as const);
    const v = int(1, 900);
    seed.tb[String(id)] = String(Number(seed.tb[String(id)] ?? 0) + v);
    bsum += v;
    blo = blo === null ? id : Math.min(blo, id);
  }
  if (blo !== null || r() < 0.2) {
    const sKind = pick(['sum', 'sum', 'sum', 'drift', 'none'] as const);
    if (sKind === 'sum') seed.tb.s = String(bsum);
    else if (sKind === 'drift') seed.tb.s = String(bsum + int(1, 500));
    const loKind = pick(['exact', 'exact', 'lower', 'none'] as const);
    if (loKind === 'exact' && blo !== null) seed.tb.lo = String(blo);
    else if (loKind === 'lower') seed.tb.lo = String((blo ?? bid) - int(1, 100));
  }
  // RPM sub-buckets: the lease's acquisition bucket present (0, 1 or more), or gone
  const rpmAt = r() < 0.4 ? t0 - pick([10, 5000, 30_000, 61_000] as const) : null;
  if (rpmAt !== null && r() < 0.8) {
    const id = Math.floor(rpmAt / BUCKET_MS);
    const v = pick([0, 1, 1, 7] as const);
    seed.rb[String(id)] = String(v);
    seed.rb[String(id - 3)] = '4';
    seed.rb.s = String(v + 4);
    seed.rb.lo = String(id - 3);
  }
  // in-flight leases: ours (live or expired), others live or expired
  if (r() < 0.85) seed.ik.push([t0 + pick([30_000, -1000] as const), leaseId]);
  for (let i = 0, n = int(0, 5); i < n; i++)
    seed.ik.push([t0 + pick([-20_000, -1, 500, 30_000] as const), `inf-${i}`]);

  // Adaptive: the provider's retreat state and window
  const windowMs = pick([10_000, 60_000] as const);
  const slotMs = Math.ceil(windowMs / 10);
  const cur = Math.floor(t0 / slotMs);
  const st = pick([null, 0, 0, 1, 1, 2, 2] as const);
  if (st !== null) {
    seed.rt.st = String(st);
    seed.rt.f = String(st === 0 ? 1000 : pick([50, 300, 800, 950] as const));
    seed.rt.since = String(t0 - int(0, 100_000));
    seed.rt.cut = String(t0 - pick([1000, windowMs + 5000] as const));
    seed.rt.calm = String(pick([0, 0, t0 - 1000, t0 - 400_000] as const));
    seed.rt.step = String(t0 - pick([10, 400_000] as const));
    seed.rt.ob = String(pick([0, 0, 120, 600] as const));
  }
  if (r() < 0.3) {
    seed.rt.tk = String(int(0, 20));
    seed.rt.ts = String(t0 - 100);
  }
  const heavy = r() < 0.4;
  for (let i = 0; i < 10; i++) {
    if (r() < 0.3) continue;
    const sid = cur - pick([0, 0, 1, 3, 9, 10, 15] as const);
    seed.rw[`s${sid % 10}`] = String(sid);
    const n = int(0, heavy ? 40 : 8);
    seed.rw[`n${sid % 10}`] = String(n);
    seed.rw[`e${sid % 10}`] = String(heavy ? int(0, n) : pick([0, 0, 0, 1] as const));
  }
  // the window's totals (report.lua): for this slot (the answer path's fast path) and consistent,
  // drifted, for an older slot, or absent (a window written before they existed)
  const totals = pick(['none', 'cur', 'cur', 'cur', 'drift', 'old'] as const);
  if (totals !== 'none') {
    const i = cur % 10;
    if (totals !== 'old' && seed.rw[`s${i}`] !== String(cur)) {
      seed.rw[`s${i}`] = String(cur);
      seed.rw[`n${i}`] = String(int(0, heavy ? 40 : 8));
      seed.rw[`e${i}`] = '0';
    }
    let N = 0;
    let E = 0;
    for (let j = 0; j < 10; j++) {
      const sid = Number(seed.rw[`s${j}`] ?? NaN);
      if (sid > cur - 10 && sid <= cur) {
        N += Number(seed.rw[`n${j}`] ?? 0);
        E += Number(seed.rw[`e${j}`] ?? 0);
      }
    }
    if (totals === 'drift') N += int(1, 5);
    seed.rw.c = `${totals === 'old' ? cur - 1 : cur}:${windowMs}`;
    seed.rw.N = String(N);
    seed.rw.E = String(E);
  }

  // Adaptive: the key's learning state
  if (learned !== null) seed.ah.ll = String(learned);
  for (const f of ['c', 'u', 'r', 't'] as const) {
    const v = pick([null, null, 0, 1, 3] as const);
    if (v !== null) seed.ah[f] = String(v);
  }
  if (r() < 0.3) seed.ah.bd = String(int(2, 20));
  if (r() < 0.3) seed.ah.hold = String(t0 + pick([-10_000, 60_000] as const));
  if (r() < 0.3) seed.ah.lc = String(t0 - pick([10_000, 400_000] as const));
  if (r() < 0.3) seed.ah.lp = String(t0 - pick([10_000, 400_000] as const));
  if (r() < 0.2) seed.ah.sg = String(int(1, 8));
  if (r() < 0.5) seed.ah.v = String(t0 - 30_000);

  const notSent = r() < 0.1;
  const kind = notSent ? 'plain' : pick(['plain', 'ok', 'ok', 'ok', '429', 'inc'] as const);
  const inFlightAtAcquire = int(1, 30);
  const initial = 8;
  let report: Case['report'] = null;
  if (kind !== 'plain') {
    const type = pick(TYPES);
    const learn: LearnOp | null =
      kind === '429'
        ? {
            op: '429',
            type,
            inFlight: inFlightAtAcquire,
            learned: r() < 0.8,
            initial,
            decreasePermille: 850,
            unknownPermille: 900,
            holdMs: 60_000,
            minLimit: 1,
          }
        : kind === 'inc'
          ? {
              op: 'inc',
              expected: pick([learned ?? initial, (learned ?? initial) + 1] as const),
              reason: pick(['high_utilisation', 'probe'] as const),
              inFlight: inFlightAtAcquire,
              initial,
              maxLimit: pick([10, 100] as const),
              probeIntervalMs: 300_000,
              slowStartPermille: pick([1000, 2000] as const),
            }
          : null;
    report = {
      answers: 1,
      rate429s: kind === '429' && type !== 'concurrency' ? 1 : 0,
      retreat: {
        windowMs,
        minSamples: pick([5, 20] as const),
        enterPermyriad: pick([500, 1000] as const),
        exitPermyriad: pick([200, 500] as const),
        holdMs: pick([500, 60_000] as const),
        factorPermille: 500,
        minFactorPermille: 50,
        stepPermille: pick([100, 250] as const),
        stepMs: pick([100, 60_000] as const),
        baseRpm: pick([0, 600, 6000] as const),
        enabled: r() < 0.85,
      },
      learn,
    };
  }
  return {
    providerId,
    keyId: 'k',
    leaseId,
    seed,
    tokens: pick([0, 0, int(1, 5000)] as const),
    cooldownMs: pick([0, 0, 0, 0, 30_000, 5000] as const),
    notSent,
    tpmBuckets,
    rpmAt,
    report,
    charge,
  };
}

function inputs(c: Case): { keys: string[]; args: string[] } {
  return encodeRelease({
    providerId: c.providerId,
    keyId: c.keyId,
    leaseId: c.leaseId,
    tokens: c.tokens,
    cooldownMs: c.cooldownMs,
    notSent: c.notSent,
    hashTtlMs: 86_400_000,
    tpmBuckets: c.tpmBuckets,
    rpmBuckets: c.rpmAt !== null ? { acquiredAtMs: c.rpmAt } : null,
    contribution: c.report ? encodeReport({ providerId: c.providerId, keyId: c.keyId, ...c.report }) : null,
    rider: c.charge
      ? {
          keys: [`rl:{key:${c.providerId}}:tpm:log`, `rl:{key:${c.providerId}}:tpm:sum`],
          args: [c.charge.member, c.charge.tokens, 60_000],
        }
      : null,
  });
}

/** Logical names of every key a case touches, with their type. */
function touched(c: Case): [string, 'hash' | 'zset' | 'string'][] {
  const { keys } = inputs({
    ...c,
    report: c.report ?? reportStub(),
    charge: c.charge ?? { tokens: 1, member: 'x' },
  });
  return [
    [keys[0]!, 'hash'],
    [keys[1]!, c.rpmAt !== null ? 'hash' : 'zset'],
    [keys[2]!, c.tpmBuckets ? 'hash' : 'zset'],
    [keys[3]!, 'zset'],
    [keys[4]!, 'hash'],
    [keys[5]!, 'hash'],
    [keys[7]!, 'hash'],
    [keys[keys.length - 2]!, 'zset'],
    [keys[keys.length - 1]!, 'string'],
  ];
}
function reportStub(): NonNullable<Case['report']> {
  return {
    answers: 0,
    rate429s: 0,
    retreat: {
      windowMs: 1,
      minSamples: 0,
      enterPermyriad: 0,
      exitPermyriad: 0,
      holdMs: 0,
      factorPermille: 0,
      minFactorPermille: 0,
      stepPermille: 0,
      stepMs: 0,
      baseRpm: 0,
      enabled: false,
    },
    learn: null,
  };
}
const SEED_OF: (keyof Seed)[] = ['hk', 'rk', 'tk', 'ik', 'rt', 'rw', 'ah', 'cl', 'cs'];
const seedOf = (c: Case, j: number) =>
  j === 2 && c.tpmBuckets ? c.seed.tb : j === 1 && c.rpmAt !== null ? c.seed.rb : c.seed[SEED_OF[j]!];

const deep = (v: unknown): unknown => (Array.isArray(v) ? v.map(deep) : String(v));
/** TTL class: none, missing, or the remaining seconds (rounded to 5 s). */
const ttlClass = (ms: number) =>
  ms === -1 ? 'none' : ms === -2 ? 'missing' : `~${Math.round(ms / 5000) * 5}s`;
/** A key's contents and TTL class (an emptied key is missing in Redis; LocalDb may keep it empty). */
const entry = (pairs: [string, string][], ttl: string) =>
  pairs.length === 0 ? [[], 'missing'] : [pairs.sort(), ttl];
const ms = (t: unknown): number => {
  const [sec, usec] = t as [string | number, string | number];
  return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
};

describe('answer path: release (+ Adaptive report contribution) — Lua (Redis) ≡ TypeScript (LocalDb)', () => {
  let client: Redis;
  const prefix = uniqueName('fgrel');
  // [contribution][rider]: the plain release, with Adaptive's report, with the client's token charge, both
  const scripts = [
    [releaseScript(null), releaseScript(null, TOKEN_CHARGE_STEP)],
    [releaseScript(ADAPTIVE_REPORT), releaseScript(ADAPTIVE_REPORT, TOKEN_CHARGE_STEP)],
  ];
  const shas = new Map<string, string>();
  const scriptOf = (c: Case) => scripts[c.report ? 1 : 0]![c.charge ? 1 : 0]!;

  beforeAll(async () => {
    client = new Redis(TEST_REDIS_URL);
    for (const s of scripts.flat()) {
      shas.set(s.name, (await client.script('LOAD', s.lua)) as string);
      shas.set(s.batch.name, (await client.script('LOAD', s.batch.lua)) as string);
    }
  });
  afterAll(async () => {
    await dropRedisPrefix(prefix);
    client?.disconnect();
  });

  // batched: the cases of a round run as ONE call of the batch form (ReleaseBatcher's), the full
  // composition's (a case without a report or a charge passes no contribution/rider inputs)
  it.each([
    ['one call per release', false],
    ['all releases of a round in one batch call', true],
  ] as const)(`${CASES} randomised cases: same reply, same stored state (%s)`, async (_, batched) => {
    const r = rng(18_1);
    const seen = new Map<string, number>();
    const count = (k: string) => seen.set(k, (seen.get(k) ?? 0) + 1);
    let compared = 0;
    // a batch call's replies are checked at every ms it spanned: smaller rounds keep that span short
    const size = batched ? BATCH / 5 : BATCH;
    for (let b = 0; b < CASES / size; b++) {
      const t0 = ms(await client.time());
      const cases = Array.from({ length: size }, (_, i) => makeCase(r, t0, `eq${b}-${i}`));
      const p = client.pipeline();
      const full = (k: string) => `${prefix}:${k}`;
      for (const c of cases) {
        if (!batched) continue;
        touched(c).forEach(([k], j) => {
          const s = seedOf(c, j);
          if (s === null) return;
          if (typeof s === 'string') p.set(full(k), s);
          else if (Array.isArray(s)) {
            if (s.length) p.zadd(full(k), ...s.flatMap(([score, m]) => [score, m]));
          } else if (Object.keys(s).length) p.hset(full(k), s);
        });
      }
      if (batched) {
        const { keys, args } = encodeReleaseBatch(cases.map(inputs));
        p.time();
        p.evalsha(shas.get(scripts[1]![1]!.batch.name)!, keys.length, ...keys.map(full), ...args);
        p.time();
      }
      for (const c of cases) {
        if (batched) {
          for (const [k, type] of touched(c)) {
            if (type === 'hash') p.hgetall(full(k));
            else if (type === 'string') p.get(full(k));
            else p.zrange(full(k), 0, -1, 'WITHSCORES');
            p.pttl(full(k));
          }
          continue;
        }
        touched(c).forEach(([k], j) => {
          const s = seedOf(c, j);
          if (s === null) return;
          if (typeof s === 'string') p.set(full(k), s);
          else if (Array.isArray(s)) {
            if (s.length) p.zadd(full(k), ...s.flatMap(([score, m]) => [score, m]));
          } else if (Object.keys(s).length) p.hset(full(k), s);
        });
        const { keys, args } = inputs(c);
        p.time();
        p.evalsha(shas.get(scriptOf(c).name)!, keys.length, ...keys.map(full), ...args);
        p.time();
        for (const [k, type] of touched(c)) {
          if (type === 'hash') p.hgetall(full(k));
          else if (type === 'string') p.get(full(k));
          else p.zrange(full(k), 0, -1, 'WITHSCORES');
          p.pttl(full(k));
        }
      }
      const res = (await p.exec())!;
      let at = 0;
      const seeded = (c: Case) =>
        touched(c).filter((_, j) => {
          const s = seedOf(c, j);
          return (
            s !== null && (typeof s === 'string' || (Array.isArray(s) ? s.length : Object.keys(s).length))
          );
        }).length;
      let batch: { before: number; replies: unknown[]; after: number } | null = null;
      if (batched) {
        for (const c of cases) at += seeded(c);
        const [err, replies] = res[at + 1]!;
        expect(err).toBeNull();
        batch = { before: ms(res[at]![1]), replies: replies as unknown[], after: ms(res[at + 2]![1]) };
        expect(batch.replies).toHaveLength(cases.length);
        at += 3;
      }
      for (const [ci, c] of cases.entries()) {
        const keys = touched(c);
        let before: number, after: number, reply: unknown;
        if (batch) {
          ({ before, after } = batch);
          reply = batch.replies[ci];
          expect(Array.isArray(reply), JSON.stringify({ c, reply })).toBe(true);
        } else {
          at += seeded(c);
          before = ms(res[at]![1]);
          const [err, one] = res[at + 1]!;
          expect(err, JSON.stringify(c)).toBeNull();
          reply = one;
          after = ms(res[at + 2]![1]);
          at += 3;
        }
        const state: unknown[] = [];
        for (const [, type] of keys) {
          const v = res[at]![1];
          const ttl = ttlClass(Number(res[at + 1]![1]));
          at += 2;
          if (type === 'hash') state.push(entry(Object.entries(v as Hash), ttl));
          else if (type === 'string') state.push(entry(v === null ? [] : [['v', v as string]], ttl));
          else {
            const flat = v as string[];
            const pairs: [string, string][] = [];
            for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!]);
            state.push(entry(pairs, ttl));
          }
        }
        const lua = JSON.stringify([deep(reply), state]);

        const runTs = (now: number) => {
          const db = new LocalDb();
          db.now = now;
          keys.forEach(([k], j) => {
            const s = seedOf(c, j);
            if (s === null) return;
            if (typeof s === 'string') db.set(k, s);
            else if (Array.isArray(s)) for (const [score, m] of s) db.zadd(k, score, m);
            else if (Object.keys(s).length) db.hset(k, s);
          });
          const { keys: K, args } = inputs(c);
          const out = scriptOf(c).local(db, K, args, now);
          const st: unknown[] = [];
          for (const [k, type] of keys) {
            const ttl = ttlClass(db.pttl(k));
            if (type === 'hash') st.push(entry(Object.entries(db.hgetall(k)), ttl));
            else if (type === 'string') {
              const v = db.get(k);
              st.push(entry(v === null ? [] : [['v', v]], ttl));
            } else
              st.push(
                entry(
                  db.zrange(k, 0, -1).map((e) => [e.member, String(e.score)]),
                  ttl,
                ),
              );
          }
          return { out, text: JSON.stringify([deep(out), st]) };
        };
        let ts = runTs(before);
        for (let now = before + 1; now <= after && ts.text !== lua; now++) ts = runTs(now);
        expect(lua, JSON.stringify({ case: c, before, after })).toEqual(ts.text);

        // what the grid reached
        const rel = decodeRelease(ts.out as ReleaseResult);
        if (c.tokens > 0 && !c.tpmBuckets)
          count(c.seed.tk.some(([s]) => s <= before - 60_000) ? 'tpm:trim' : 'tpm:no-trim');
        if (c.tokens > 0 && c.tpmBuckets) {
          const opened = c.seed.tb[String(Math.floor(before / BUCKET_MS))] === undefined;
          const stale = Object.keys(c.seed.tb).some(
            (f) => f !== 's' && f !== 'lo' && Number(f) < Math.floor(before / BUCKET_MS) - WINDOW_BUCKETS,
          );
          count(`tpb:${opened ? 'new-bucket' : 'same-bucket'}${opened && stale ? '+trim' : ''}`);
        }
        if (c.charge) {
          const oldest = Math.min(...c.seed.cl.map(([at]) => at));
          count(
            c.seed.cl.length === 0
              ? 'charge:new-log'
              : oldest <= before - 61_000
                ? 'charge:trim'
                : oldest <= before - 60_000
                  ? 'charge:stale-kept'
                  : 'charge:in-window',
          );
          if (c.seed.cl.length > 0 && c.seed.cs === null) count('charge:sum-missing');
        }
        if (rel.cooldownUntilMs > 0) count('cooldown');
        if (c.notSent) count(c.rpmAt !== null ? 'notSent:rpb' : 'notSent');
        if (rel.contribution !== null) {
          const tag = `${Math.floor(before / Math.ceil(c.report!.retreat.windowMs / 10))}:${c.report!.retreat.windowMs}`;
          count(c.seed.rw.c === tag ? 'window:totals' : 'window:sum');
          const rep = decodeReport(rel.contribution as ScriptValue);
          count(`retreat:${rep.retreat[4] || 'none'}`);
          if (rep.learn) count(`learn:${c.report!.learn!.op}:${rep.learn.code}`);
        }
        compared++;
      }
      await client.del(...cases.flatMap((c) => touched(c).map(([k]) => full(k))));
    }
    expect(compared).toBe(CASES);
    for (const k of [
      'charge:new-log',
      'charge:trim',
      'charge:stale-kept',
      'charge:in-window',
      'charge:sum-missing',
      'tpm:trim',
      'tpm:no-trim',
      'tpb:new-bucket',
      'tpb:new-bucket+trim',
      'tpb:same-bucket',
      'cooldown',
      'notSent',
      'notSent:rpb',
      'window:totals',
      'window:sum',
      'retreat:none',
      'retreat:enter',
      'retreat:cut',
      'retreat:recover',
      'retreat:retreat',
      'retreat:step',
      'retreat:normal',
      'retreat:disabled',
      'learn:429:concurrency_429',
      'learn:429:no_change',
      'learn:429:fixed',
      'learn:inc:high_utilisation',
      'learn:inc:stale',
    ])
      expect(seen.get(k) ?? 0, k).toBeGreaterThan(5);
    console.log(
      `[release equivalence${batched ? ', batched' : ''}] ${compared} cases equal; ${[...seen]
        .sort()
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
  });
});
