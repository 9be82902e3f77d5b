import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AcquireStep, ConcurrencyLimit } from '../../src/key-pool/key-pool.types.js';
import {
  composeInputs,
  keyNames,
  lruKey,
  providerLua,
  selectionInputs,
  selectionScript,
  sequenceKey,
  type SelectionCandidate,
} from '../../src/key-pool/infrastructure/key-selection.script.js';
import {
  BUCKET_MS,
  rpmBucketed,
  tpmBucketed,
  WINDOW_BUCKETS,
} from '../../src/key-pool/infrastructure/window-buckets.js';
import { CLIENT_LIMITS_STEP } from '../../src/rate-limit/rate-limit.service.js';
import {
  ADMITTED,
  KIND_SLIDING_BUCKETS,
  KIND_SLIDING_WINDOW,
  KIND_TOKEN_BUCKET,
  KIND_TOKEN_BUDGET,
  REJECTED,
  SUB_BUCKETS,
  subBucketMs,
} from '../../src/rate-limit/rate-limit.scripts.js';
import { QUEUE_GATE, QueueMode } from '../../src/relay/admission-gates.js';
import {
  admissionScript,
  decodeAdmission,
  encodeAdmission,
} from '../../src/relay/infrastructure/admission.script.js';
import type { ScriptValue } from '../../src/state/atomic-store.js';
import { LocalDb } from '../../src/state/local-db.js';
import { PRIORITY_SCORE_FACTOR, queueKeys } from '../../src/state/priority-queue.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * The relay's combined admission (client limits + queue gate + key selection, admission.lua) exists
 * twice: Lua in Redis and its TypeScript twin over LocalDb. This suite generates stored states
 * (client sliding windows — exact logs, and sub-bucket windows for limits above 1,000 — / token
 * buckets / token budgets near their limits; upstream keys cooling,
 * at their RPM/TPM, at their concurrency; a queue with waiters ahead or not) and runs every case
 * through both, then asserts the same reply and the same resulting state, key by key. The TypeScript
 * half runs at the millisecond the script read (its reply carries it). Token buckets are kept in µs
 * by Lua and in ms × 1000 by TypeScript: their `tat` may differ by < 1 ms and their reset/retry by
 * 1 ms — seeded half an interval away from every boundary, everything else is exact.
 * It also checks the all-or-nothing rules on every case: a client refusal leaves every provider key
 * untouched and returns no selection; a client admission records the request whatever the selection.
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

const CASES = 3000;
const BATCH = 100;
const WINDOW = 60_000;

type Seed =
  | { type: 'zset'; key: string; entries: [number, string][]; ttl?: number }
  | { type: 'hash'; key: string; fields: Record<string, string> }
  | { type: 'string'; key: string; value: string };

interface Case {
  seeds: Seed[];
  clientKeys: string[];
  clientArgs: (string | number)[];
  /** Which client keys hold token-bucket state (compared with a tolerance). */
  bucketKeys: Set<string>;
  /** Per client policy: its kind and first key. */
  policies: { kind: number; key: string }[];
  providerKeys: string[];
  step: AcquireStep;
}

function makeCase(r: () => number, t0: number, tag: string): Case {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  /**
   * Entries that have left the window (exact logs are trimmed lazily): none, some less than the
   * trim slack (1 s for a 60 s window) out of it (kept, not counted), or some further out (the log
   * is trimmed and its TTL renewed) — kept away from both boundaries; "less than the slack" is
   * seeded close to the window's edge, so a batch that runs a few hundred ms after t0 (a loaded
   * machine) still has such entries.
   */
  const stale = (n: number): number[] =>
    Array.from({ length: n }, () => t0 - WINDOW - pick([int(20, 300), int(1_100, 30_000)]));
  /** A log's TTL before the step: none, or one that a renewal (121 s) can be told from. */
  const seedTtl = () => pick([undefined, 90_000, 200_000]);
  const seeds: Seed[] = [];
  const clientKeys: string[] = [];
  const bucketKeys = new Set<string>();
  const policies: { kind: number; key: string }[] = [];
  const nPolicies = int(0, 4);
  const clientArgs: (string | number)[] = [`m-${tag}`, 0, 0, nPolicies];
  for (let j = 0; j < nPolicies; j++) {
    const kind = pick([
      KIND_SLIDING_WINDOW,
      KIND_SLIDING_WINDOW,
      KIND_SLIDING_BUCKETS,
      KIND_TOKEN_BUCKET,
      KIND_TOKEN_BUDGET,
    ]);
    const key = `rl:c${j}:${tag}`;
    policies.push({ kind, key });
    if (kind === KIND_SLIDING_BUCKETS) {
      // a large limit: near it (the count spread over buckets in the window), sometimes with a
      // bucket that has left the window (trimmed first), or a hash of another bucket size
      const limit = int(1001, 3000);
      const bms = subBucketMs(WINDOW);
      const cur = Math.floor(t0 / bms);
      const n = pick([0, limit - 1, limit, limit, limit + 1, int(1, limit)]);
      const fields: Record<string, string> = {};
      let left = n;
      while (left > 0) {
        const v = Math.min(left, int(1, Math.ceil(limit / 3)));
        const id = String(cur - int(0, SUB_BUCKETS));
        fields[id] = String(Number(fields[id] ?? 0) + v);
        left -= v;
      }
      let sum = n;
      if (n > 0 && r() < 0.3) {
        const gone = int(1, 500);
        fields[String(cur - SUB_BUCKETS - int(1, 5))] = String(gone);
        sum += gone;
      }
      if (Object.keys(fields).length > 0) {
        fields.s = String(sum);
        fields.lo = String(
          Math.min(
            ...Object.keys(fields)
              .map(Number)
              .filter((x) => !Number.isNaN(x)),
          ),
        );
        fields.b = String(r() < 0.1 ? bms * 2 : bms);
        seeds.push({ type: 'hash', key, fields });
      }
      clientKeys.push(key);
      clientArgs.push(kind, limit, WINDOW, limit, 1);
    } else if (kind === KIND_SLIDING_WINDOW) {
      const limit = int(1, 4);
      const n = pick([0, limit - 1, limit, limit, limit + 1].map((x) => Math.max(0, x)));
      const entries: [number, string][] = Array.from({ length: n }, (_, i) => [
        t0 - int(1_000, 50_000),
        `old${i}`,
      ]);
      stale(pick([0, 0, 1, 3])).forEach((at, i) => entries.push([at, `gone${i}`]));
      if (entries.length > 0) seeds.push({ type: 'zset', key, entries, ttl: seedTtl() });
      clientKeys.push(key);
      clientArgs.push(kind, limit, WINDOW, limit, 1);
    } else if (kind === KIND_TOKEN_BUCKET) {
      const limit = 10; // interval 6 s
      const interval = (WINDOW * 1000) / limit;
      const burst = int(1, 3);
      const k = pick([null, -2, -1, 0, 1, 2, 3]);
      if (k !== null)
        seeds.push({ type: 'string', key, value: String(t0 * 1000 + k * interval + interval / 2) });
      clientKeys.push(key);
      bucketKeys.add(key);
      clientArgs.push(kind, limit, WINDOW, burst, 1);
    } else {
      const sum = `${key}:sum`;
      const limit = 1000;
      const charges = pick([[], [300], [600, 500], [999, 1]]);
      const gone = pick([[], [], [400], [250, 2000]]);
      if (charges.length + gone.length > 0) {
        const at = stale(gone.length);
        seeds.push({
          type: 'zset',
          key,
          entries: [
            ...charges.map((t, i): [number, string] => [t0 - int(1_000, 50_000), `c${i}:${t}`]),
            ...gone.map((t, i): [number, string] => [at[i]!, `g${i}:${t}`]),
          ],
          ttl: seedTtl(),
        });
        const total = [...charges, ...gone].reduce((a, b) => a + b, 0);
        seeds.push({ type: 'string', key: sum, value: String(total) });
      }
      clientKeys.push(key, sum);
      clientArgs.push(kind, limit, WINDOW, limit, 0);
    }
  }

  const providerId = `p${tag}`;
  const candidates: SelectionCandidate[] = [];
  const nKeys = int(1, 3);
  const lru: [number, string][] = [];
  for (let i = 0; i < nKeys; i++) {
    const keyId = `k${i}`;
    // max_tpm 20,000 is above TPM_EXACT_MAX: its window is the sub-bucket hash (:tpb)
    const maxTpm = pick([null, null, 100, 20_000]);
    // max_rpm 5,000 is above RPM_EXACT_MAX: its window is the sub-bucket hash (:rpb)
    const maxRpm = pick([null, 1, 2, 3, 5000]);
    const [hk, rk, tk, ik] = keyNames(providerId, keyId, tpmBucketed(maxTpm), rpmBucketed(maxRpm));
    const concurrency: ConcurrencyLimit = pick([
      { kind: 'none' },
      { kind: 'fixed', limit: int(1, 2) },
      { kind: 'learned', initial: 2 },
    ] as ConcurrencyLimit[]);
    const fields: Record<string, string> = {};
    // the key's place in the provider's LRU set (ties broken by candidate order)
    if (r() < 0.6) lru.push([int(1, 20), keyId]);
    if (r() < 0.2) fields.cd = String(t0 + pick([-30_000, 30_000]));
    // when the selection last renewed the hash's TTL: recently (no renewal now) or long ago
    if (r() < 0.5) fields.rx = String(t0 - pick([1000, 30 * 3_600_000]));
    if (concurrency.kind === 'learned' && r() < 0.6) fields.cl = String(int(1, 3));
    const rpmN = maxRpm === 5000 ? 0 : int(0, 3);
    if (maxRpm === 5000 && r() < 0.7) {
      const bid = Math.floor(t0 / BUCKET_MS);
      const b: Record<string, string> = {};
      let sum = 0;
      let lo = bid;
      for (let j = 0, n = int(1, 3); j < n; j++) {
        const id = bid - pick([0, 2, WINDOW_BUCKETS, WINDOW_BUCKETS + 1, 100]);
        const v = pick([1000, 2500, 4999]);
        b[String(id)] = String(Number(b[String(id)] ?? 0) + v);
        sum += v;
        lo = Math.min(lo, id);
      }
      b.s = String(sum);
      b.lo = String(lo);
      seeds.push({ type: 'hash', key: rk, fields: b });
    }
    const rpmGone = maxRpm !== null && maxRpm !== 5000 ? stale(pick([0, 0, 1, 2])) : [];
    if (rpmN + rpmGone.length > 0)
      seeds.push({
        type: 'zset',
        key: rk,
        entries: [
          ...Array.from({ length: rpmN }, (_, j): [number, string] => [t0 - int(1_000, 50_000), `r${j}`]),
          ...rpmGone.map((at, j): [number, string] => [at, `rg${j}`]),
        ],
        ttl: seedTtl(),
      });
    if (maxTpm === 100 && r() < 0.5) {
      seeds.push({ type: 'zset', key: tk, entries: [[t0 - int(1_000, 50_000), 'x:120']] });
      fields.ts = '120';
    }
    if (maxTpm === 20_000 && r() < 0.7) {
      // buckets in the window, at its edge and gone; s consistent; lo exact or lower (a trim is due)
      const bid = Math.floor(t0 / BUCKET_MS);
      const b: Record<string, string> = {};
      let sum = 0;
      let lo = bid;
      for (let j = 0, n = int(1, 4); j < n; j++) {
        const id = bid - pick([0, 1, 30, WINDOW_BUCKETS - 1, WINDOW_BUCKETS, WINDOW_BUCKETS + 1, 300]);
        const v = pick([2000, 7000, 12_000]);
        b[String(id)] = String(Number(b[String(id)] ?? 0) + v);
        sum += v;
        lo = Math.min(lo, id);
      }
      b.s = String(sum);
      b.lo = String(lo - pick([0, 0, 5]));
      seeds.push({ type: 'hash', key: tk, fields: b });
    }
    if (Object.keys(fields).length) seeds.push({ type: 'hash', key: hk, fields });
    const infN = int(0, 2);
    if (infN > 0)
      seeds.push({
        type: 'zset',
        key: ik,
        entries: Array.from({ length: infN }, (_, j) => [t0 + pick([-5_000, 30_000]), `l${j}`]),
      });
    candidates.push({
      keyId,
      priority: pick([1, 1, 2]),
      maxRpm,
      maxTpm,
      concurrency,
      dbCooldownUntilMs: pick([0, 0, 0, t0 + 30_000]),
    });
  }
  candidates.sort((a, b) => a.priority - b.priority);
  if (lru.length > 0) seeds.push({ type: 'zset', key: lruKey(providerId), entries: lru });
  const [wait, jobs] = queueKeys(providerId);
  if (r() < 0.3) {
    const p = int(1, 4);
    seeds.push({ type: 'zset', key: wait, entries: [[p * PRIORITY_SCORE_FACTOR + 5, 'job1']] });
  }
  const inputs = composeInputs(
    { keys: [wait, jobs], args: [int(1, 4), pick([QueueMode.respectQueue, QueueMode.bypass])] },
    selectionInputs(providerId, candidates, `lease-${tag}`, 30_000, 86_400_000),
  );
  const gated = selectionScript(QUEUE_GATE);
  const step: AcquireStep = {
    name: gated.name,
    lua: providerLua(QUEUE_GATE),
    local: (db, keys, args, now) => gated.local(db, keys, args, now),
    keys: inputs.keys,
    args: inputs.args,
    finish: () => {
      throw new Error('not used');
    },
    abandon: () => undefined,
  };
  const providerKeys = [
    sequenceKey(providerId),
    lruKey(providerId),
    wait,
    jobs,
    ...candidates.flatMap((c) => keyNames(providerId, c.keyId, tpmBucketed(c.maxTpm), rpmBucketed(c.maxRpm))),
  ];
  return { seeds, clientKeys, clientArgs, bucketKeys, policies, providerKeys, step };
}

type State = Record<string, unknown>;

/** TTL class: none, or the remaining seconds rounded to 5 s (the Lua side is read a few ms later). */
const ttlClass = (ms: number) => (ms === -1 ? 'none' : `~${Math.round(ms / 5000) * 5}s`);

function localState(db: LocalDb, keys: string[]): State {
  const out: State = {};
  for (const k of keys) {
    const v = db.zset(k) as unknown; // LocalDb keeps every type in one map
    if (v === undefined) continue;
    if (typeof v === 'string') out[k] = v;
    else if (v instanceof Map) {
      if (v.size > 0) out[k] = db.hgetall(k);
    } else if (db.zcard(k) > 0) out[k] = db.zrange(k, 0, -1).map((e) => [e.member, e.score]);
    if (k in out) out[`${k} ttl`] = ttlClass(db.pttl(k));
  }
  return out;
}

/** Both states and replies, token-bucket values rounded to what both clocks agree on. */
function canon(reply: ScriptValue, state: State, c: Case): string {
  const s: State = {};
  for (const [k, v] of Object.entries(state).sort(([a], [b]) => a.localeCompare(b))) {
    // a token bucket's value and TTL come from clocks of different precision (see above)
    if (k.endsWith(' ttl') && c.bucketKeys.has(k.slice(0, -4))) continue;
    s[k] = c.bucketKeys.has(k) ? 'tat' : v;
  }
  const decoded = decodeAdmission(reply);
  const client = [...(decoded.client as number[])];
  // per policy: admitted, remaining, current, reset, retry; bucket reset/retry may differ by 1 ms
  c.policies.forEach((policy, j) => {
    const b = 2 + j * 5;
    if (policy.kind === KIND_TOKEN_BUCKET) {
      client[b + 3] = Math.floor(client[b + 3]! / 10);
      client[b + 4] = Math.floor(client[b + 4]! / 10);
    }
  });
  return JSON.stringify([client, decoded.provider, s]);
}

describe('relay admission: Lua (Redis) ≡ TypeScript (LocalDb), all-or-nothing', () => {
  let client: Redis;
  const prefix = uniqueName('fgadm');

  beforeAll(() => {
    client = new Redis(TEST_REDIS_URL);
  });
  afterAll(async () => {
    await dropRedisPrefix(prefix);
    client?.disconnect();
  });

  it(`${CASES} generated cases: same reply, same stored state; refusals change nothing`, async () => {
    const r = rng(2026_12_04);
    const seen = {
      clientRefused: 0,
      leased: 0,
      capacityRefused: 0,
      bucketsRefused: 0,
      bucketsAdmitted: 0,
      // exact logs (client windows, budgets, upstream RPM): trimmed now, or stale entries kept
      logTrimmed: 0,
      logStaleKept: 0,
    };
    let sha = '';
    for (let b = 0; b < CASES / BATCH; b++) {
      const [sec, usec] = (await client.time()) as unknown as [string, string];
      const t0 = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
      const cases = Array.from({ length: BATCH }, (_, i) => makeCase(r, t0, `${b}x${i}`));
      const script = admissionScript(CLIENT_LIMITS_STEP, cases[0]!.step);
      if (!sha) sha = (await client.script('LOAD', script.lua)) as string;
      const full = (k: string) => `${prefix}:${k}`;

      const p = client.pipeline();
      for (const c of cases) {
        for (const s of c.seeds) {
          if (s.type === 'zset') {
            for (const [score, m] of s.entries) p.zadd(full(s.key), score, m);
            if (s.ttl) p.pexpire(full(s.key), s.ttl);
          } else if (s.type === 'hash') p.hset(full(s.key), s.fields);
          else p.set(full(s.key), s.value);
        }
        const { keys, args } = encodeAdmission(
          { keys: c.clientKeys, args: c.clientArgs },
          { keys: c.step.keys, args: c.step.args },
        );
        p.evalsha(sha, keys.length, ...keys.map(full), ...args);
        for (const k of [...c.clientKeys, ...c.providerKeys]) {
          p.type(full(k));
          p.zrange(full(k), 0, -1, 'WITHSCORES');
          p.hgetall(full(k));
          p.get(full(k));
          p.pttl(full(k));
        }
      }
      const res = (await p.exec())!;
      let at = 0;
      for (const c of cases) {
        at += c.seeds.reduce((n, s) => n + (s.type === 'zset' ? s.entries.length + (s.ttl ? 1 : 0) : 1), 0);
        const [err, reply] = res[at]!;
        expect(err).toBeNull();
        at += 1;
        const luaState: State = {};
        for (const k of [...c.clientKeys, ...c.providerKeys]) {
          const type = res[at]![1] as string;
          if (type === 'zset') {
            const flat = res[at + 1]![1] as string[];
            const entries: [string, number][] = [];
            for (let i = 0; i < flat.length; i += 2) entries.push([flat[i]!, Number(flat[i + 1])]);
            luaState[k] = entries;
          } else if (type === 'hash') luaState[k] = res[at + 2]![1];
          else if (type === 'string') luaState[k] = res[at + 3]![1];
          if (k in luaState) luaState[`${k} ttl`] = ttlClass(Number(res[at + 4]![1]));
          at += 5;
        }

        // TypeScript: the same seed in a fresh LocalDb, at the millisecond the script read.
        const decoded = decodeAdmission(reply as ScriptValue);
        const nowMs = (decoded.client as number[])[1]!;
        for (const sd of c.seeds) {
          if (sd.type !== 'zset' || sd.entries.length === 0) continue;
          if (!c.clientKeys.includes(sd.key) && !sd.key.endsWith(':rpm')) continue;
          const oldest = Math.min(...sd.entries.map(([at]) => at));
          if (oldest <= nowMs - WINDOW - 1000) seen.logTrimmed++;
          else if (oldest <= nowMs - WINDOW) seen.logStaleKept++;
        }
        const db = new LocalDb();
        db.now = nowMs;
        for (const s of c.seeds) {
          if (s.type === 'zset') {
            for (const [score, m] of s.entries) db.zadd(s.key, score, m);
            if (s.ttl) db.pexpire(s.key, s.ttl);
          } else if (s.type === 'hash') db.hset(s.key, s.fields);
          else db.set(s.key, s.value);
        }
        const before = localState(db, c.providerKeys);
        const { keys, args } = encodeAdmission(
          { keys: c.clientKeys, args: c.clientArgs },
          { keys: c.step.keys, args: c.step.args },
        );
        const tsReply = script.local(db, keys, args, nowMs);
        const tsState = localState(db, [...c.clientKeys, ...c.providerKeys]);
        expect(canon(tsReply, tsState, c)).toBe(canon(reply as ScriptValue, luaState, c));

        // The rules, on the TypeScript half (now known equal to the Lua).
        const ts = decodeAdmission(tsReply);
        const status = (ts.client as number[])[0];
        c.policies.forEach((policy, j) => {
          if (policy.kind !== KIND_SLIDING_BUCKETS) return;
          if ((ts.client as number[])[2 + j * 5] === 1) seen.bucketsAdmitted++;
          else seen.bucketsRefused++;
        });
        if (status === REJECTED) {
          seen.clientRefused++;
          expect(ts.provider).toBeNull();
          expect(localState(db, c.providerKeys)).toEqual(before);
        } else {
          expect(status).toBe(ADMITTED);
          expect(ts.provider).not.toBeNull();
          const selection = ts.provider as ScriptValue[];
          if (selection[0] === 1) seen.leased++;
          else seen.capacityRefused++;
          // every sliding window records the request, whatever the provider step answered
          for (const policy of c.policies) {
            if (policy.kind === KIND_SLIDING_WINDOW)
              expect(db.zscore(policy.key, String(c.clientArgs[0]))).not.toBeNull();
            if (policy.kind === KIND_SLIDING_BUCKETS)
              expect(
                Number(db.hget(policy.key, String(Math.floor(nowMs / subBucketMs(WINDOW))))),
              ).toBeGreaterThan(0);
          }
        }
      }
    }
    // the grid reaches every branch
    expect(seen.clientRefused).toBeGreaterThan(CASES / 20);
    expect(seen.leased).toBeGreaterThan(CASES / 20);
    expect(seen.capacityRefused).toBeGreaterThan(CASES / 20);
    expect(seen.bucketsRefused).toBeGreaterThan(CASES / 20);
    expect(seen.bucketsAdmitted).toBeGreaterThan(CASES / 20);
    expect(seen.logTrimmed).toBeGreaterThan(CASES / 20);
    expect(seen.logStaleKept).toBeGreaterThan(CASES / 20);
  }, 120_000);
});
