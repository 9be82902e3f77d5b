import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdmissionGate, ConcurrencyLimit } from '../../src/key-pool/key-pool.types.js';
import {
  allKeyNames,
  composeInputs,
  keyNames,
  releaseLateScript,
  renewScript,
  selectionInputs,
  selectionScript,
  snapshotScript,
  type SelectionCandidate,
  type SelectionResult,
} from '../../src/key-pool/infrastructure/key-selection.script.js';
import { encodeRelease, releaseScript } from '../../src/key-pool/infrastructure/release.script.js';
import { tpmBucketed } from '../../src/key-pool/infrastructure/window-buckets.js';
import {
  AtomicStore,
  MemoryAtomicStore,
  RedisAtomicStore,
  type AtomicScript,
} from '../../src/state/atomic-store.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * Contract suite of KeyPool's atomic scripts: the same cases against the in-process store (local
 * half) and Redis (Lua half). Times come from each store's clock, so expectations allow the few ms a
 * round trip takes.
 */
interface Impl {
  store: AtomicStore;
  close(): Promise<void>;
}

async function memoryImpl(): Promise<Impl> {
  const store = new MemoryAtomicStore();
  return { store, close: async () => store.close() };
}

async function redisImpl(): Promise<Impl> {
  const prefix = uniqueName('fgkp');
  const client = new Redis(TEST_REDIS_URL);
  return {
    store: new RedisAtomicStore(client, prefix),
    close: async () => {
      await dropRedisPrefix(prefix);
      client.disconnect();
    },
  };
}

const hsetScript: AtomicScript<number> = {
  name: 'test-hset',
  lua: `redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1`,
  local(db, keys, args) {
    db.hset(keys[0]!, { [args[0]!]: args[1]! });
    return 1;
  },
};

/** A provider token counter as an admission gate, written in both languages. */
const tokenGate: AdmissionGate = {
  name: 'test-tokens',
  checkLua: `
    local used = tonumber(redis.call('GET', GK[1]) or '0')
    if used >= tonumber(GA[1]) then return {'provider_throttled', 750} end
    return nil`,
  commitLua: `
    redis.call('INCR', GK[1])
    redis.call('SET', GK[2], keyId)`,
  check: (db, keys, args) =>
    Number(db.get(keys[0]!) ?? '0') >= Number(args[0]) ? ['provider_throttled', 750] : null,
  commit: (db, keys, _args, _now, keyId) => {
    db.incrby(keys[0]!, 1);
    db.set(keys[1]!, keyId);
  },
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function key(keyId: string, priority: number, extra: Partial<SelectionCandidate> = {}): SelectionCandidate {
  return {
    keyId,
    priority,
    maxRpm: null,
    maxTpm: null,
    concurrency: { kind: 'none' },
    dbCooldownUntilMs: 0,
    ...extra,
  };
}

class Pool {
  readonly providerId = randomUUID();
  constructor(
    readonly store: AtomicStore,
    readonly candidates: SelectionCandidate[],
  ) {}

  async acquire(
    opts: { leaseTtlMs?: number; gate?: { gate: AdmissionGate; keys: string[]; args: string[] } } = {},
  ) {
    const leaseId = randomUUID();
    const sorted = [...this.candidates].sort((a, b) => a.priority - b.priority);
    const inputs = composeInputs(
      opts.gate ?? null,
      selectionInputs(this.providerId, sorted, leaseId, opts.leaseTtlMs ?? 30_000, 86_400_000),
    );
    const r = await this.store.run<SelectionResult>(
      selectionScript(opts.gate?.gate ?? null),
      inputs.keys,
      inputs.args,
    );
    return { r, leaseId, keyId: r[0] === 1 ? sorted[r[1] - 1]!.keyId : null };
  }

  report(
    keyId: string,
    leaseId: string,
    opts: { tokens?: number; cooldownMs?: number; notSent?: boolean } = {},
  ) {
    const buckets = tpmBucketed(this.candidates.find((c) => c.keyId === keyId)?.maxTpm);
    return this.store.run(RELEASE, ...releaseInputs(this.providerId, keyId, leaseId, { ...opts, buckets }));
  }

  snapshot(keyId: string) {
    return this.store.run(snapshotScript, allKeyNames(this.providerId, keyId), []);
  }
}

describe.each([
  ['memory', memoryImpl],
  ['redis', redisImpl],
] as const)('KeyPool selection script contract (%s)', (name, make) => {
  let impl: Impl;
  beforeAll(async () => {
    impl = await make();
  });
  afterAll(async () => {
    await impl?.close();
  });

  it('priority then LRU; the priority-2 key only when both priority-1 keys are at max_rpm; then a window refusal', async () => {
    const pool = new Pool(impl.store, [
      key('a', 1, { maxRpm: 3 }),
      key('b', 1, { maxRpm: 3 }),
      key('c', 2, { maxRpm: 3 }),
    ]);
    const picks: (string | null)[] = [];
    let last: SelectionResult | null = null;
    for (let i = 0; i < 10; i++) {
      const { r, keyId } = await pool.acquire();
      picks.push(keyId);
      last = r;
    }
    expect(picks).toEqual(['a', 'b', 'a', 'b', 'a', 'b', 'c', 'c', 'c', null]);
    expect(last![0]).toBe(0);
    expect(last![1]).toBe('rate_limited');
    expect(last![2]).toBeGreaterThan(59_000);
    expect(last![2]).toBeLessThanOrEqual(60_000);
    expect(last!.slice(3)).toEqual([0, 3, 0]);
    expect((await pool.snapshot('a'))[0]).toBe(3);
  });

  it('atomic under concurrency: 300 simultaneous acquires against 3 keys × max_rpm 40 admit exactly 40 per key', async () => {
    const pool = new Pool(impl.store, [
      key('a', 1, { maxRpm: 40 }),
      key('b', 1, { maxRpm: 40 }),
      key('c', 2, { maxRpm: 40 }),
    ]);
    const results = await Promise.all(Array.from({ length: 300 }, () => pool.acquire()));
    const perKey: Record<string, number> = {};
    for (const r of results) if (r.keyId) perKey[r.keyId] = (perKey[r.keyId] ?? 0) + 1;
    expect(perKey).toEqual({ a: 40, b: 40, c: 40 });
    expect(results.filter((r) => r.r[0] === 0 && r.r[1] === 'rate_limited')).toHaveLength(180);
  });

  it('TPM: tokens reported after the response fill the sliding window; refusal says when enough age out', async () => {
    const pool = new Pool(impl.store, [key('a', 1, { maxTpm: 1000 })]);
    const l1 = await pool.acquire();
    await pool.report('a', l1.leaseId, { tokens: 600 });
    const l2 = await pool.acquire();
    expect(l2.keyId).toBe('a');
    await pool.report('a', l2.leaseId, { tokens: 500 });
    await pool.report('a', l2.leaseId, { tokens: 500 }); // a second report of the same lease charges nothing
    const refused = await pool.acquire();
    expect(refused.r[0]).toBe(0);
    expect(refused.r[1]).toBe('rate_limited');
    expect(refused.r[2]).toBeGreaterThan(59_000);
    expect((await pool.snapshot('a'))[1]).toBe(1100);
  });

  it('TPM above TPM_EXACT_MAX (sub-bucket window): charges fill it, refusal at max_tpm says when the oldest bucket leaves', async () => {
    const pool = new Pool(impl.store, [key('a', 1, { maxTpm: 20_000 })]);
    const l1 = await pool.acquire();
    await pool.report('a', l1.leaseId, { tokens: 12_000 });
    const l2 = await pool.acquire();
    expect(l2.keyId).toBe('a');
    await pool.report('a', l2.leaseId, { tokens: 9000 });
    const refused = await pool.acquire();
    expect(refused.r[0]).toBe(0);
    expect(refused.r[1]).toBe('rate_limited');
    // the first charge's bucket leaves 60–61 s after it
    expect(refused.r[2]).toBeGreaterThan(59_000);
    expect(refused.r[2]).toBeLessThanOrEqual(61_000);
    expect((await pool.snapshot('a'))[1]).toBe(21_000);
  });

  it('cooldown: the key is skipped until it passes, then serves again by itself; refusal carries the earliest recovery', async () => {
    const pool = new Pool(impl.store, [key('a', 1), key('b', 1)]);
    const la = await pool.acquire();
    const lb = await pool.acquire();
    // A 3 s cooldown: the refusal below must come while it runs, with room for a busy machine
    // (with 600 ms, 200 ms of stalls between the report and the refusal broke its "> 400").
    const [cdA] = await pool.report(la.keyId!, la.leaseId, { cooldownMs: 3000 });
    await pool.report(lb.keyId!, lb.leaseId, { cooldownMs: 60_000 });
    expect(cdA).toBeGreaterThan(Date.now() - 50);
    const refused = await pool.acquire();
    expect(refused.r[0]).toBe(0);
    expect(refused.r[1]).toBe('cooling');
    expect(refused.r[2]).toBeGreaterThan(2000);
    expect(refused.r[2]).toBeLessThanOrEqual(3000);
    expect(refused.r.slice(3)).toEqual([2, 0, 0]);
    // cooling until cdA, never served before it; then it serves again (polled, not a fixed sleep)
    let next = await pool.acquire();
    for (const deadline = Date.now() + 10_000; next.keyId === null && Date.now() < deadline;) {
      expect(next.r[1]).toBe('cooling');
      await sleep(25);
      next = await pool.acquire();
    }
    expect(Date.now()).toBeGreaterThanOrEqual(cdA - 5);
    expect(next.keyId).toBe(la.keyId);
  });

  it("Postgres's cooldown_until (argument) is honoured when the store has none (restart)", async () => {
    const pool = new Pool(impl.store, [key('a', 1, { dbCooldownUntilMs: Date.now() + 10_000 }), key('b', 2)]);
    expect((await pool.acquire()).keyId).toBe('b');
  });

  it('concurrency: fixed limit; released by report; renewable; an abandoned lease frees its slot after its TTL', async () => {
    const fixed: ConcurrencyLimit = { kind: 'fixed', limit: 2 };
    const pool = new Pool(impl.store, [key('a', 1, { concurrency: fixed })]);
    // l2 (abandoned) and l3 (renewed) have 1 s leases; l1 and the later ones leases that cannot
    // expire during the test, so "still held" never depends on how fast a busy machine makes the
    // next call. The waits are polled conditions, not fixed sleeps.
    const l1 = await pool.acquire();
    const l2 = await pool.acquire({ leaseTtlMs: 1000 });
    expect(l2.r[2]).toBe(2);
    const full = await pool.acquire();
    expect(full.r.slice(0, 2)).toEqual([0, 'saturated']);
    expect((await pool.report('a', l1.leaseId))[1]).toBe(1);
    const l3At = Date.now();
    const l3 = await pool.acquire({ leaseTtlMs: 1000 });
    expect(l3.keyId).toBe('a');
    expect(await impl.store.run(renewScript, [keyNames(pool.providerId, 'a')[3]], [l3.leaseId, 60_000])).toBe(
      1,
    );
    // past both first TTLs: l2 (never renewed) expired, l3 (renewed) is alive
    for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
      if (Date.now() > l3At + 1100 && (await pool.snapshot('a'))[2] === 1) break;
      await sleep(25);
    }
    expect((await pool.snapshot('a'))[2]).toBe(1);
    expect((await pool.acquire()).keyId).toBe('a');
    expect((await pool.acquire()).r[1]).toBe('saturated');
    expect(await impl.store.run(renewScript, [keyNames(pool.providerId, 'a')[3]], [l2.leaseId, 400])).toBe(0);
  });

  it('learned limit: the `cl` field written by Adaptive is enforced in the same step', async () => {
    const pool = new Pool(impl.store, [key('a', 1, { concurrency: { kind: 'learned', initial: 1 } })]);
    expect((await pool.acquire()).keyId).toBe('a');
    expect((await pool.acquire()).r[1]).toBe('saturated');
    await impl.store.run(hsetScript, [keyNames(pool.providerId, 'a')[0]], ['cl', '3']);
    expect((await pool.acquire()).keyId).toBe('a');
    expect((await pool.acquire()).keyId).toBe('a');
    expect((await pool.acquire()).r[1]).toBe('saturated');
  });

  it('notSent gives the RPM slot back', async () => {
    const pool = new Pool(impl.store, [key('a', 1, { maxRpm: 1 })]);
    const l = await pool.acquire();
    expect((await pool.acquire()).r[1]).toBe('rate_limited');
    await pool.report('a', l.leaseId, { notSent: true });
    expect((await pool.acquire()).keyId).toBe('a');
  });

  it('late release: frees the leases still held among the candidate keys (RPM too when never sent), counts them; a repeat is a no-op', async () => {
    const limit: ConcurrencyLimit = { kind: 'fixed', limit: 2 };
    const pool = new Pool(impl.store, [
      key('a', 1, { maxRpm: 2, concurrency: limit }),
      key('b', 1, { maxRpm: 2, concurrency: limit }),
    ]);
    const lost = await pool.acquire(); // an acquisition whose answer never came back
    const failed = await pool.acquire(); // a sent request whose release failed
    const late = (entries: { leaseId: string; keyIds: string[]; notSent: boolean }[]) => {
      const keys: string[] = [];
      const args: string[] = [];
      for (const e of entries)
        for (const k of e.keyIds) {
          const [, rpm, , inf] = keyNames(pool.providerId, k);
          keys.push(rpm, inf);
          args.push(e.leaseId, e.notSent ? '1' : '0');
        }
      return impl.store.run(releaseLateScript, keys, args);
    };
    const entries = [
      { leaseId: lost.leaseId, keyIds: ['a', 'b'], notSent: true },
      { leaseId: failed.leaseId, keyIds: [failed.keyId!], notSent: false },
      { leaseId: randomUUID(), keyIds: ['a', 'b'], notSent: true }, // never ran in the store
    ];
    expect(await late(entries)).toBe(2);
    const [sa, sb] = [await pool.snapshot('a'), await pool.snapshot('b')];
    expect(sa[2] + sb[2]).toBe(0); // no lease in flight
    expect(sa[0] + sb[0]).toBe(1); // the sent request keeps its RPM entry, the lost one gave it back
    expect(await late(entries)).toBe(0);
  });

  it('an admission gate is composed into the same step: checked first, committed only with a key', async () => {
    const pool = new Pool(impl.store, [key('a', 1, { maxRpm: 1 }), key('b', 1, { maxRpm: 1 })]);
    const tok = `gate:${randomUUID()}`;
    const lastKey = `gate:${randomUUID()}`;
    const gate = { gate: tokenGate, keys: [tok, lastKey], args: ['3'] };
    expect((await pool.acquire({ gate })).keyId).toBe('a');
    expect((await pool.acquire({ gate })).keyId).toBe('b');
    const noKey = await pool.acquire({ gate });
    expect(noKey.r[1]).toBe('rate_limited'); // gate passed (2 < 3) but no key: its commit did not run
    const after = await pool.acquire({ gate: { ...gate, args: ['2'] } });
    expect(after.r).toEqual([0, 'gate:provider_throttled', 750, 0, 0, 0]);
  });

  it(`selection cost per call (${name})`, async () => {
    const pool = new Pool(
      impl.store,
      Array.from({ length: 5 }, (_, i) =>
        key(`k${i}`, i < 3 ? 1 : 2, {
          maxRpm: 1_000_000,
          maxTpm: 1_000_000_000,
          concurrency: { kind: 'fixed', limit: 10_000 },
        }),
      ),
    );
    for (let i = 0; i < 200; i++) await pool.acquire(); // warm up (EVALSHA cached, JIT)
    const n = 2000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await pool.acquire();
    const sequentialUs = Number(process.hrtime.bigint() - t0) / 1000 / n;
    const t1 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: n }, () => pool.acquire()));
    const concurrentUs = Number(process.hrtime.bigint() - t1) / 1000 / n;
    console.log(
      `[key-pool] selection (${name}, 5 candidates, RPM+TPM+concurrency): ${sequentialUs.toFixed(1)} µs/call sequential, ${concurrentUs.toFixed(1)} µs/call with ${n} concurrent`,
    );
    expect(sequentialUs).toBeLessThan(name === 'memory' ? 1000 : 5000);
  });
});

const RELEASE = releaseScript(null);
function releaseInputs(
  providerId: string,
  keyId: string,
  leaseId: string,
  opts: { tokens?: number; cooldownMs?: number; notSent?: boolean; buckets?: boolean },
): [string[], string[]] {
  const { keys, args } = encodeRelease({
    providerId,
    keyId,
    leaseId,
    tokens: opts.tokens ?? 0,
    cooldownMs: opts.cooldownMs ?? 0,
    notSent: opts.notSent === true,
    hashTtlMs: 86_400_000,
    tpmBuckets: opts.buckets === true,
  });
  return [keys, args];
}
