import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/app-config.js';
import { ClientIpService } from '../../src/rate-limit/client-ip.service.js';
import { spendBudgetPolicy, type Policy } from '../../src/rate-limit/policies.js';
import {
  AdmissionScript,
  RenewSpendScript,
  RollbackScript,
  SettleSpendScript,
  SpendStateScript,
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
  /** A sorted set's members, sorted by name. */
  members(key: string): Promise<string[]>;
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
      members: (k) =>
        Promise.resolve(
          memory.db
            .zrange(k, 0, -1)
            .map((e) => e.member)
            .sort(),
        ),
      close: async () => memory.close(),
    },
    {
      name: 'redis',
      store: redis,
      limiter: limiterOver(redis),
      get: (k) => client.get(`${prefix}:${k}`),
      pttl: (k) => client.pttl(`${prefix}:${k}`),
      members: async (k) => (await client.zrange(`${prefix}:${k}`, 0, -1)).sort(),
      close: async () => {
        await dropRedisPrefix(prefix);
        client.disconnect();
      },
    },
  ];
}

const policy = (
  subject: string,
  reserve: number,
  limit = 100,
  resetMs = 3_600_000,
  ttlMs = 600_000,
): Policy =>
  spendBudgetPolicy({
    subject,
    period: 'day',
    periodId: 'd2026-12-06',
    limitMicros: limit,
    resetMs,
    reserveMicros: reserve,
    reservationTtlMs: ttlMs,
  });

type Run = [string[], (string | number)[]];
const admit = (impl: Impl, policies: Policy[], member: string) =>
  impl.store.run(AdmissionScript, ...(Object.values(inputs(policies, member)) as Run)) as Promise<number[]>;
/** SettleSpendScript for one policy's counter: member, reserved, actual (ttl 600 s). */
const settle = (impl: Impl, p: Policy, member: string, reserved: number, actual: number) =>
  impl.store.run(SettleSpendScript, p.keys, [member, reserved, actual, 600_000]) as Promise<number[]>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
      // one reservation per admitted request, `<member>:<µ$>`, in the counter's slot
      seen.push(await impl.members(`${key}:res`));
      const ttl = await impl.pttl(key);
      expect(await impl.pttl(`${key}:res`), impl.name).toBeGreaterThan(3_600_000);
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
      ['m0:30', 'm1:30', 'm2:30'],
      0,
      null,
      1,
    ]);
    expect(replies[1]).toEqual(replies[0]);
  });

  it('settles by actual − reserved, once however often it is sent; a counter gone with its period is left alone; rollback gives the reservation back once', async () => {
    const results: unknown[][] = [];
    for (const impl of all) {
      const p = policy('key:s1', 500, 10_000_000_000_000);
      const key = p.keys[0]!;
      await admit(impl, [p], 's');
      const settled = await settle(impl, p, 's', 500, 380);
      // sent again (its first answer was lost): nothing changes
      const again = await settle(impl, p, 's', 500, 380);
      const gone = await impl.store.run(
        SettleSpendScript,
        ['rl:{key:gone}:budget:d2026-12-06', 'rl:{key:gone}:budget:d2026-12-06:res'],
        ['s', 500, 380, 600_000],
      );
      const marks = await impl.members(`${key}:res`);
      // big amounts stay exact (no float formatting in the Lua)
      await admit(impl, [policy('key:s1', 9_000_000_000_000, 10_000_000_000_000)], 'b');
      const big = await impl.get(key);
      // a rollback (Redis Cluster: a later subject refused) gives the reservation back, once
      const step = inputs([policy('key:s1', 9_000_000_000_000, 10_000_000_000_000)], 'b');
      const rolled = (await impl.store.run(RollbackScript, step.keys, step.args)) as number[];
      const rolledAgain = (await impl.store.run(RollbackScript, step.keys, step.args)) as number[];
      results.push([
        settled,
        again,
        gone,
        marks,
        big,
        rolled[0],
        rolledAgain[0],
        await impl.get(key),
        await impl.members(`${key}:res`),
      ]);
    }
    expect(results[0]).toEqual([[380], [380], [-1], ['s:s'], '9000000000380', 1, 0, '380', ['s:s']]);
    expect(results[1]).toEqual(results[0]);
  });

  it('a reservation nobody renews is given back at its deadline (by the next step on its counter); a renewed one stays; settling after the sweep adds the actual cost, once', async () => {
    const results: unknown[][] = [];
    for (const impl of all) {
      // TTL 1 s: `dead` (its instance died) and `live` (renewed for 10 minutes at once)
      const p = policy('key:ttl1', 40, 100, 3_600_000, 1000);
      const key = p.keys[0]!;
      const res = p.keys[1]!;
      await admit(impl, [p], 'dead');
      await admit(impl, [p], 'live');
      const renewed = await impl.store.run(RenewSpendScript, [res, res], [600_000, 'live:40', 'nobody:40']);
      // full: 80 reserved of 100, a third request of 40 is refused
      const refused = await admit(impl, [p], 'third');
      await sleep(1300);
      // the next step on the counter sweeps `dead` first: 40 back, the third now fits
      const admitted = await admit(impl, [p], 'third');
      const afterSweep = [await impl.get(key), await impl.members(res)];
      // `dead`'s settlement arrives after all (a lost reply re-sent late): its actual cost is added, once
      const late = await settle(impl, p, 'dead', 40, 25);
      const lateAgain = await settle(impl, p, 'dead', 40, 25);
      // a request admitted while failing open (no reservation made) settles to its actual cost, once
      const open = await settle(impl, p, 'open', 0, 5);
      const openAgain = await settle(impl, p, 'open', 0, 5);
      const state = await impl.store.run(SpendStateScript, [key, res], []);
      results.push([
        renewed,
        refused[0],
        admitted[0],
        afterSweep,
        late,
        lateAgain,
        open,
        openAgain,
        (state as number[]).slice(0, 3),
      ]);
    }
    expect(results[0]).toEqual([
      [1, 0],
      0,
      1,
      ['80', ['live:40', 'third:40']],
      [105],
      [105],
      [110],
      [110],
      // counter 110 = live 40 + third 40 + dead's 25 + open's 5; 2 reservations outstanding (80 µ$)
      [110, 80, 2],
    ]);
    expect(results[1]).toEqual(results[0]);
  });

  it('RateLimitService.settleSpend sends a settlement again once when the store call fails (its answer lost after it ran): it counts once', async () => {
    const memory = new MemoryAtomicStore();
    let failures = 0;
    // a store that runs the first settlement but loses its answer
    const lossy = Object.create(memory) as MemoryAtomicStore;
    lossy.run = (async (script, keys, args) => {
      const reply = await memory.run(script, keys, args);
      if (script === SettleSpendScript && failures++ === 0) throw new Error('connection lost');
      return reply;
    }) as MemoryAtomicStore['run'];
    const limiter = limiterOver(lossy);
    const p = policy('key:lost', 50, 1000);
    await memory.run(AdmissionScript, ...(Object.values(inputs([p], 'r1')) as Run));
    const ran = await limiter.settleSpend({
      counters: [{ key: p.keys[0]!, res: p.keys[1]! }],
      member: 'r1',
      reserved: 50,
      actual: 20,
      ttlMs: 600_000,
    });
    expect(ran).toBe(true);
    expect(failures).toBe(2);
    expect(memory.db.get(p.keys[0]!)).toBe('20');
    memory.close();
  });

  it('the state of a counter that does not exist: -1, nothing reserved', async () => {
    for (const impl of all) {
      const r = (await impl.store.run(
        SpendStateScript,
        ['rl:{key:none}:budget:total', 'rl:{key:none}:budget:total:res'],
        [],
      )) as number[];
      expect(r.slice(0, 3), impl.name).toEqual([-1, 0, 0]);
    }
  });
});
