import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/app-config.js';
import { ClientIpService } from '../../src/rate-limit/client-ip.service.js';
import { spendBudgetPolicy, type Policy } from '../../src/rate-limit/policies.js';
import {
  AdmissionScript,
  RollbackScript,
  SettleSpendScript,
  SPEND_TTL_SLACK_MS,
} from '../../src/rate-limit/rate-limit.scripts.js';
import { RateLimitService } from '../../src/rate-limit/rate-limit.service.js';
import { AtomicStore, MemoryAtomicStore, RedisAtomicStore } from '../../src/state/atomic-store.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * The spend-budget policy (kind 5) and its settlement, Lua and in-process twin side by side: the same
 * sequence of reservations, refusals, rollbacks and settlements gives the same replies and counters
 * in both stores (docs/spend.md "Budgets").
 */

interface Impl {
  name: string;
  store: AtomicStore;
  limiter: RateLimitService;
  get(key: string): Promise<string | null>;
  pttl(key: string): Promise<number>;
  close(): Promise<void>;
}

function limiterOver(store: AtomicStore): RateLimitService {
  const config = loadConfig({});
  return new RateLimitService(config, store, new ClientIpService(config), {
    find: () => Promise.resolve(null),
  });
}

async function impls(): Promise<Impl[]> {
  const memory = new MemoryAtomicStore();
  const prefix = uniqueName('fgbud');
  const client = new Redis(TEST_REDIS_URL);
  const redis = new RedisAtomicStore(client, prefix);
  return [
    {
      name: 'memory',
      store: memory,
      limiter: limiterOver(memory),
      get: (k) => Promise.resolve(memory.db.get(k)),
      pttl: (k) => Promise.resolve(memory.db.pttl(k)),
      close: async () => memory.close(),
    },
    {
      name: 'redis',
      store: redis,
      limiter: limiterOver(redis),
      get: (k) => client.get(`${prefix}:${k}`),
      pttl: (k) => client.pttl(`${prefix}:${k}`),
      close: async () => {
        await dropRedisPrefix(prefix);
        client.disconnect();
      },
    },
  ];
}

const policy = (subject: string, reserve: number, limit = 100, resetMs = 3_600_000): Policy =>
  spendBudgetPolicy({
    subject,
    period: 'day',
    periodId: 'd2026-12-06',
    limitMicros: limit,
    resetMs,
    reserveMicros: reserve,
  });

/** AdmissionScript's KEYS/ARGV for policies (what RateLimitService.inputs builds). */
const inputs = (policies: Policy[], member = 'm1') => ({
  keys: policies.flatMap((p) => p.keys),
  args: [
    member,
    0,
    0,
    policies.length,
    ...policies.flatMap((p) => [p.kind, p.limit, p.windowMs, p.burst, p.cost]),
  ],
});

describe('spend budget scripts: Lua and the local twin agree', () => {
  let all: Impl[];
  beforeAll(async () => {
    all = await impls();
  });
  afterAll(async () => {
    for (const i of all ?? []) await i.close();
  });

  it('reserves while used + this <= limit, refuses past it (retry = ms to the reset), all-or-nothing with another subject', async () => {
    const replies: unknown[][] = [];
    for (const impl of all) {
      const seen: unknown[] = [];
      const key = policy('key:k1', 30).keys[0]!;
      for (let i = 0; i < 4; i++) {
        const r = (await impl.store.run(
          AdmissionScript,
          ...(Object.values(inputs([policy('key:k1', 30)], `m${i}`)) as [string[], (string | number)[]]),
        )) as number[];
        seen.push([r[0], ...r.slice(2)]);
      }
      seen.push(await impl.get(key));
      const ttl = await impl.pttl(key);
      expect(ttl, impl.name).toBeGreaterThan(3_600_000);
      expect(ttl, impl.name).toBeLessThanOrEqual(3_600_000 + SPEND_TTL_SLACK_MS);
      // a second subject that refuses: the first is not charged (nothing recorded anywhere)
      const both = [policy('user:u1', 10), policy('team:t1', 200)];
      const r = (await impl.store.run(
        AdmissionScript,
        ...(Object.values(inputs(both, 'mx')) as [string[], (string | number)[]]),
      )) as number[];
      seen.push(r[0], await impl.get(both[0]!.keys[0]!));
      // zero-cost request at exactly the limit: admitted (spent + reserved + 0 <= limit)
      await impl.store.run(
        AdmissionScript,
        ...(Object.values(inputs([policy('key:k2', 100)], 'z1')) as [string[], (string | number)[]]),
      );
      const zero = (await impl.store.run(
        AdmissionScript,
        ...(Object.values(inputs([policy('key:k2', 0)], 'z2')) as [string[], (string | number)[]]),
      )) as number[];
      seen.push(zero[0]);
      replies.push(seen);
    }
    // [status, admitted, remaining, current, reset, retry] per run
    expect(replies[0]).toEqual([
      [1, 1, 70, 30, 3_600_000, 0],
      [1, 1, 40, 60, 3_600_000, 0],
      [1, 1, 10, 90, 3_600_000, 0],
      [0, 0, 10, 90, 3_600_000, 3_600_000],
      '90',
      0,
      null,
      1,
    ]);
    expect(replies[1]).toEqual(replies[0]);
  });

  it('settles by actual − reserved on counters that exist; a counter gone with its period is left alone; rollback gives the reservation back', async () => {
    const results: unknown[][] = [];
    for (const impl of all) {
      const p = policy('key:s1', 500, 10_000_000_000_000);
      const key = p.keys[0]!;
      const step = inputs([p], 's');
      await impl.store.run(AdmissionScript, step.keys, step.args);
      const settled = await impl.store.run(
        SettleSpendScript,
        [key, 'rl:{key:gone}:budget:d2026-12-06'],
        ['-120'],
      );
      const afterSettle = await impl.get(key);
      // big amounts stay exact (no float formatting in the Lua)
      await impl.store.run(SettleSpendScript, [key], [String(9_000_000_000_000)]);
      const big = await impl.get(key);
      const rolled = await impl.store.run(RollbackScript, step.keys, step.args);
      results.push([settled, afterSettle, big, (rolled as number[])[0], await impl.get(key)]);
    }
    expect(results[0]).toEqual([[380, -1], '380', '9000000000380', 1, '8999999999880']);
    expect(results[1]).toEqual(results[0]);
  });
});
