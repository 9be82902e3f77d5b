import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/app-config.js';
import { ClientIpService } from '../../src/rate-limit/client-ip.service.js';
import { requestPolicy, tokenBudgetPolicy, type Policy } from '../../src/rate-limit/policies.js';
import { AdmissionScript, ChargeTokensScript, STALE } from '../../src/rate-limit/rate-limit.scripts.js';
import { RateLimitService, type DecisionResult } from '../../src/rate-limit/rate-limit.service.js';
import { RateLimitStorage } from '../../src/rate-limit/rate-limit.storage.js';
import { AtomicStore, MemoryAtomicStore, RedisAtomicStore } from '../../src/state/atomic-store.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * The limiter's contract, run against both stores (in-process and Redis) on the real clock,
 * through RateLimitService.decide (the code the guard runs). Exact boundaries on a controlled clock
 * are in src/rate-limit/rate-limit.scripts.spec.ts.
 */

interface Impl {
  store: AtomicStore;
  limiter: RateLimitService;
  zcard(key: string): Promise<number>;
  close(): Promise<void>;
}

function limiterOver(store: AtomicStore): RateLimitService {
  const config = loadConfig({});
  return new RateLimitService(config, store, new ClientIpService(config), {
    find: () => Promise.resolve(null),
  });
}

async function memoryImpl(): Promise<Impl> {
  const store = new MemoryAtomicStore();
  return {
    store,
    limiter: limiterOver(store),
    zcard: (k) => Promise.resolve(store.db.zcard(k)),
    close: async () => store.close(),
  };
}

async function redisImpl(): Promise<Impl> {
  const prefix = uniqueName('fgrl');
  const client = new Redis(TEST_REDIS_URL);
  const store = new RedisAtomicStore(client, prefix);
  return {
    store,
    limiter: limiterOver(store),
    zcard: (k) => client.zcard(`${prefix}:${k}`),
    close: async () => {
      await dropRedisPrefix(prefix);
      client.disconnect();
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const admitted = (d: DecisionResult) => d.kind === 'admitted';
function retryMs(d: DecisionResult): number {
  if (d.kind !== 'limited') throw new Error(`expected limited, got ${d.kind}`);
  return Math.max(...d.outcomes.filter((o) => !o.admitted).map((o) => o.retryMs));
}
const id = () => randomUUID().slice(0, 8);

describe.each([
  ['memory', memoryImpl],
  ['redis', redisImpl],
] as const)('rate limiter contract (%s store)', (name, make) => {
  let impl: Impl;
  beforeAll(async () => {
    impl = await make();
  });
  afterAll(async () => {
    await impl?.close();
  });

  it('sliding window is exact at the boundary: refused until the oldest admission is `window` old, then admitted', async () => {
    const sw = requestPolicy('t', 'sliding_window', 3, 600, 0, `s:${id()}`);
    const firstSent = Date.now();
    expect(admitted(await impl.limiter.decide([sw]))).toBe(true);
    const firstDone = Date.now();
    expect(admitted(await impl.limiter.decide([sw]))).toBe(true);
    expect(admitted(await impl.limiter.decide([sw]))).toBe(true);
    const refused = await impl.limiter.decide([sw]);
    const wait = retryMs(refused);
    expect(wait).toBeGreaterThan(500);
    expect(wait).toBeLessThanOrEqual(600);
    // Poll every 5 ms: the first admission comes no earlier than first + window, and promptly after it.
    let readmittedAt = 0;
    while (Date.now() < firstDone + 900) {
      const before = Date.now();
      if (admitted(await impl.limiter.decide([sw]))) {
        readmittedAt = before;
        break;
      }
      await sleep(5);
    }
    expect(readmittedAt).toBeGreaterThan(0);
    expect(Date.now() - firstSent).toBeGreaterThanOrEqual(600);
    expect(readmittedAt - firstDone).toBeLessThan(600 + 60);
  });

  it('rejected requests consume nothing; a retry after retry_ms succeeds', async () => {
    const sw = requestPolicy('t', 'sliding_window', 5, 800, 0, `r:${id()}`);
    const start = Date.now();
    const first = await Promise.all(Array.from({ length: 5 }, () => impl.limiter.decide([sw])));
    // the five were admitted at (slightly) different moments under load: all are in before this
    const firstDone = Date.now();
    expect(first.every(admitted)).toBe(true);
    // hammer while limited: 30 refusals over ~300 ms
    let refusals = 0;
    for (let i = 0; i < 30; i++) {
      const d = await impl.limiter.decide([sw]);
      expect(d.kind).toBe('limited');
      refusals++;
      await sleep(10);
    }
    expect(refusals).toBe(30);
    const d = await impl.limiter.decide([sw]);
    expect(retryMs(d)).toBeGreaterThan(0);
    // retry_ms frees the oldest slot; the newest of the five is free 800 ms after `firstDone`
    await sleep(Math.max(retryMs(d), firstDone + 800 + 20 - Date.now()));
    // all five slots come back (refusals took none of them)
    const back = await Promise.all(Array.from({ length: 6 }, () => impl.limiter.decide([sw])));
    expect(back.filter(admitted)).toHaveLength(5);
    expect(Date.now() - start).toBeGreaterThanOrEqual(800);
  });

  it('1,000 concurrent requests against a limit of 50 admit exactly 50, each its own member', async () => {
    const sw = requestPolicy('t', 'sliding_window', 50, 60_000, 0, `c:${id()}`);
    const results = await Promise.all(Array.from({ length: 1000 }, () => impl.limiter.decide([sw])));
    expect(results.filter(admitted)).toHaveLength(50);
    expect(await impl.zcard(sw.keys[0]!)).toBe(50);
    const currents = results
      .filter(admitted)
      .map((r) => (r.kind === 'admitted' ? r.outcomes[0]!.current : 0));
    expect(new Set(currents).size).toBe(50); // no two admissions saw the same count
  });

  it('token bucket: the burst at once, then the configured rate (measured)', async () => {
    const tb = requestPolicy('t', 'token_bucket', 20, 1000, 10, `b:${id()}`); // 20/s, burst 10
    const burst = await Promise.all(Array.from({ length: 30 }, () => impl.limiter.decide([tb])));
    expect(burst.filter(admitted)).toHaveLength(10);
    const start = Date.now();
    let n = 0;
    while (Date.now() - start < 1500) {
      if (admitted(await impl.limiter.decide([tb]))) n++;
      await sleep(2);
    }
    const elapsed = (Date.now() - start) / 1000;
    const rate = n / elapsed;
    console.log(
      `[${name}] token bucket 20/s burst 10: burst admitted 10/30, then ${n} in ${elapsed.toFixed(2)} s = ${rate.toFixed(1)}/s`,
    );
    expect(n).toBeGreaterThanOrEqual(28); // 1.5 s × 20/s = 30, minus the boundary token
    expect(n).toBeLessThanOrEqual(31);
  });

  it('several policies are all-or-nothing', async () => {
    const s = id();
    const a = requestPolicy('a', 'sliding_window', 2, 60_000, 0, `m:${s}`);
    const b = requestPolicy('b', 'sliding_window', 5, 60_000, 0, `m:${s}`);
    const c = requestPolicy('c', 'token_bucket', 5, 60_000, 5, `m:${s}`);
    const both = await Promise.all(Array.from({ length: 6 }, () => impl.limiter.decide([a, b, c])));
    expect(both.filter(admitted)).toHaveLength(2);
    const refused = both.find((d) => d.kind === 'limited')!;
    expect(refused.kind === 'limited' && refused.outcomes.map((o) => o.admitted)).toEqual([
      false,
      true,
      true,
    ]);
    const onlyB = await Promise.all(Array.from({ length: 5 }, () => impl.limiter.decide([b, c])));
    expect(onlyB.filter(admitted)).toHaveLength(3);
    expect(await impl.zcard(b.keys[0]!)).toBe(5);
  });

  it('TPM: refused up front while the window holds the budget, admitted once charges age out', async () => {
    const budget: Policy = { ...tokenBudgetPolicy(100, `key:${id()}`), windowMs: 700 };
    expect(admitted(await impl.limiter.decide([budget]))).toBe(true);
    await impl.store.run(ChargeTokensScript, budget.keys, [`c1-${id()}`, 70, 700]);
    await sleep(150);
    const [used] = await impl.store.run(ChargeTokensScript, budget.keys, [`c2-${id()}`, 40, 700]);
    expect(used).toBe(110);
    const refused = await impl.limiter.decide([budget]);
    const wait = retryMs(refused);
    expect(wait).toBeGreaterThan(400);
    expect(wait).toBeLessThanOrEqual(560);
    await sleep(wait + 5);
    const back = await impl.limiter.decide([budget]);
    expect(back.kind === 'admitted' && back.outcomes[0]!.current).toBe(40);
  });

  it('a script past its deadline changes nothing (no late counting after a timeout)', async () => {
    const sw = requestPolicy('t', 'sliding_window', 5, 60_000, 0, `d:${id()}`);
    const reply = await impl.store.run(AdmissionScript, sw.keys, ['late', 1, 0, 1, sw.kind, 5, 60_000, 5, 1]);
    expect(reply[0]).toBe(STALE);
    expect(await impl.zcard(sw.keys[0]!)).toBe(0);
  });

  it('the throttler storage port (increment) has the same check-before-add semantics', async () => {
    const storage = new RateLimitStorage(impl.limiter);
    const key = `th-${id()}`;
    const hits = [];
    for (let i = 0; i < 4; i++) hits.push(await storage.increment(key, 60_000, 3, 60_000, 'default'));
    expect(hits.map((h) => h.isBlocked)).toEqual([false, false, false, true]);
    expect(hits[2]).toMatchObject({ totalHits: 3, timeToExpire: 60 });
    expect(hits[3]!.timeToBlockExpire).toBeGreaterThanOrEqual(59);
    expect(await impl.zcard(`rl:{throttler:${key}}:default:sw`)).toBe(3);
  });
});
