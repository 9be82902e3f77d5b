import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  learnKeys,
  learnScript,
  learnSnapshotScript,
  parseSnapshots,
  RETREAT_GATE,
  retreatRecordScript,
  retreatSnapshotScript,
  retreatStateKey,
  retreatWindowKey,
  type LearnResult,
} from '../../src/adaptive/infrastructure/adaptive.scripts.js';
import {
  composeInputs,
  selectionInputs,
  selectionScript,
  type SelectionResult,
} from '../../src/key-pool/infrastructure/key-selection.script.js';
import { combineGates, grantBoxKey, QUEUE_GATE } from '../../src/relay/admission-gates.js';
import { queueKeys } from '../../src/state/priority-queue.js';
import {
  AtomicStore,
  MemoryAtomicStore,
  RedisAtomicStore,
  type AtomicScript,
} from '../../src/state/atomic-store.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * Contract suite of Adaptive's atomic scripts: every case runs against the in-process store (local
 * halves) and Redis (Lua halves). Times come from each store's clock.
 */
interface Impl {
  store: AtomicStore;
  close(): Promise<void>;
}

const IMPLS = [
  [
    'memory',
    async (): Promise<Impl> => {
      const store = new MemoryAtomicStore();
      return { store, close: async () => store.close() };
    },
  ],
  [
    'redis',
    async (): Promise<Impl> => {
      const prefix = uniqueName('fgad');
      const client = new Redis(TEST_REDIS_URL);
      return {
        store: new RedisAtomicStore(client, prefix),
        close: async () => {
          await dropRedisPrefix(prefix);
          client.disconnect();
        },
      };
    },
  ],
] as const;

const hset: AtomicScript<number> = {
  name: 'test-adaptive-hset',
  lua: `for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end return 1`,
  local(db, keys, args) {
    for (let i = 0; i < args.length; i += 2) db.hset(keys[0]!, { [args[i]!]: args[i + 1]! });
    return 1;
  },
};
const hget: AtomicScript<string> = {
  name: 'test-adaptive-hget',
  lua: `return redis.call('HGET', KEYS[1], ARGV[1]) or ''`,
  local: (db, keys, args) => db.hget(keys[0]!, args[0]!) ?? '',
};

const del: AtomicScript<number> = {
  name: 'test-adaptive-del',
  lua: `return redis.call('DEL', KEYS[1])`,
  local: (db, keys) => db.del(keys[0]!),
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// '429' args after type/inFlight/learned: initial, decrease‰, unknown‰, holdMs, minLimit
const on429 = (type: string, inFlight: number, holdMs = 60_000, learned = 1) => [
  '429',
  type,
  inFlight,
  learned,
  8,
  850,
  900,
  holdMs,
  1,
];
// 'inc' args: expected, reason, inFlight, initial, maxLimit, probeIntervalMs
const inc = (expected: number, reason: string, probeMs = 300_000) => [
  'inc',
  expected,
  reason,
  expected,
  8,
  100,
  probeMs,
];

describe.each(IMPLS)('Adaptive scripts contract (%s)', (_name, make) => {
  let impl: Impl;
  beforeAll(async () => {
    impl = await make();
  });
  afterAll(async () => {
    await impl?.close();
  });
  const run = (keys: string[], args: (string | number)[]) => impl.store.run(learnScript, keys, args);
  const snapshot = async (keys: string[]) =>
    parseSnapshots(await impl.store.run(learnSnapshotScript, keys, []), keys.length / 2)[0]!;

  describe('learned limit (field cl of the key hash)', () => {
    it('concurrency 429: ×0.85 of in-flight written to cl, counted, history kept; later 429s of the burst do not ratchet', async () => {
      const keys = learnKeys(randomUUID(), randomUUID());
      const r1 = await run(keys, on429('concurrency', 5));
      expect(r1.slice(0, 3)).toEqual([1, 8, 4]);
      expect(r1[4]).toBe('concurrency_429');
      expect(await impl.store.run(hget, [keys[0]], ['cl'])).toBe('4');
      for (const inFlight of [6, 7, 8])
        expect((await run(keys, on429('concurrency', inFlight))).slice(0, 3)).toEqual([0, 4, 4]);
      const s = await snapshot(keys);
      expect(s).toMatchObject({ cl: '4', c: '4', lt: 'concurrency', bd: '5' }); // the lowest in-flight that failed
      expect(s.h.split(';')).toHaveLength(1);
      expect(Number(s.v)).toBeGreaterThanOrEqual(r1[3]);
    });

    it('rpm/tpm 429s only count; unknown decreases mildly once per hold; fixed keys are never adjusted', async () => {
      const keys = learnKeys(randomUUID(), randomUUID());
      expect((await run(keys, on429('rpm', 8))).slice(0, 3)).toEqual([0, 8, 8]);
      expect((await run(keys, on429('tpm', 8))).slice(0, 3)).toEqual([0, 8, 8]);
      expect((await run(keys, on429('unknown', 2))).slice(0, 3)).toEqual([1, 8, 7]);
      expect((await run(keys, on429('unknown', 2))).slice(0, 3)).toEqual([0, 7, 7]); // hold
      const fixed = learnKeys(randomUUID(), randomUUID());
      expect(await run(fixed, on429('concurrency', 9, 0, 0))).toEqual([0, 8, 8, expect.any(Number), 'fixed']);
      expect(await impl.store.run(hget, [fixed[0]], ['cl'])).toBe('');
      const s = await snapshot(keys);
      expect(s).toMatchObject({ cl: '7', r: '1', t: '1', u: '2', c: '', lt: 'unknown' });
    });

    it('increase: compare-and-set on the expected value, refused during a hold and at the boundary', async () => {
      const keys = learnKeys(randomUUID(), randomUUID());
      expect((await run(keys, inc(8, 'high_utilisation'))).slice(0, 3)).toEqual([1, 8, 9]);
      expect(await run(keys, inc(8, 'high_utilisation'))).toEqual([0, 9, 9, expect.any(Number), 'stale']);
      // 9 → 8, hold 1 s, boundary 10 (a 100 ms hold could pass before the next call on a busy machine)
      await run(keys, on429('concurrency', 10, 1000));
      expect((await run(keys, inc(8, 'high_utilisation')))[4]).toBe('hold');
      await sleep(1050);
      expect((await run(keys, inc(8, 'high_utilisation'))).slice(0, 3)).toEqual([1, 8, 9]);
      expect((await run(keys, inc(9, 'high_utilisation')))[4]).toBe('boundary'); // 10 is where it failed
      expect((await run(keys, inc(9, 'probe')))[4]).toBe('quiet_period');
    });

    it('probe: after a quiet period it crosses the boundary and forgets it', async () => {
      const keys = learnKeys(randomUUID(), randomUUID());
      await run(keys, on429('concurrency', 5, 0)); // 8 → 4, boundary 5
      await sleep(120);
      expect((await run(keys, inc(4, 'high_utilisation')))[4]).toBe('boundary');
      expect((await run(keys, inc(4, 'probe', 100))).slice(0, 3)).toEqual([1, 4, 5]);
      // since the last probe (a quiet period far longer than this test: a loaded machine can take
      // more than 100 ms between two calls)
      expect((await run(keys, inc(5, 'probe', 60_000)))[4]).toBe('quiet_period');
      expect((await run(keys, inc(5, 'high_utilisation'))).slice(0, 3)).toEqual([1, 5, 6]); // boundary gone
      const s = await snapshot(keys);
      expect(s.bd).toBe('');
      expect(s.h.split(';').map((r) => r.split('|')[3])).toEqual([
        'concurrency_429',
        'probe',
        'high_utilisation',
      ]);
    });

    it("outlives KeyPool's key hash: the copy in the adaptive hash keeps the learned value", async () => {
      const keys = learnKeys(randomUUID(), randomUUID());
      await run(keys, on429('concurrency', 5, 0)); // 8 → 4
      await impl.store.run(del, [keys[0]], []); // KeyPool's hash expired after a long idle period
      expect((await snapshot(keys)).cl).toBe('4');
      expect((await run(keys, on429('concurrency', 4, 0))).slice(0, 3)).toEqual([1, 4, 3]);
      expect(await impl.store.run(hget, [keys[0]], ['cl'])).toBe('3');
    });

    it('keeps the last 20 adjustments', async () => {
      const keys = learnKeys(randomUUID(), randomUUID());
      for (let i = 8; i < 33; i++) await run(keys, inc(i, 'high_utilisation'));
      const h = (await snapshot(keys)).h.split(';');
      expect(h).toHaveLength(20);
      expect(h[19]!.split('|').slice(1, 4)).toEqual(['32', '33', 'high_utilisation']);
    });

    it('reset clears cl, counters and history but the version only grows; load respects versions', async () => {
      const keys = learnKeys(randomUUID(), randomUUID());
      const before = await run(keys, on429('concurrency', 5));
      const reset = await run(keys, ['reset']);
      expect(reset[4]).toBe('reset');
      expect(reset[3]).toBeGreaterThan(before[3]);
      const s = await snapshot(keys);
      expect(s).toMatchObject({ cl: '', c: '', h: '', lt: '', v: String(reset[3]) });
      // an older durable copy is not loaded over newer store state
      expect((await run(keys, ['load', reset[3] - 1, 3, 9, 0, 0, 0, '', '', '', '', '', '']))[4]).toBe(
        'newer',
      );
      expect(await impl.store.run(hget, [keys[0]], ['cl'])).toBe('');
      // a newer one is
      const loaded: LearnResult = await run(keys, [
        'load',
        reset[3] + 5,
        3,
        9,
        2,
        1,
        0,
        1700000000000,
        'rpm',
        '',
        4,
        '',
        '1700000000000|4|3|concurrency_429|4',
      ]);
      expect(loaded[4]).toBe('loaded');
      expect(await snapshot(keys)).toMatchObject({
        cl: '3',
        c: '9',
        r: '2',
        t: '1',
        u: '0',
        l4: '1700000000000',
        lt: 'rpm',
        bd: '4',
        lc: '',
        h: '1700000000000|4|3|concurrency_429|4',
      });
      // a fresh store takes the durable copy
      const fresh = learnKeys(randomUUID(), randomUUID());
      expect((await run(fresh, ['load', 10, '', 1, 0, 0, 0, '', '', '', '', '', '']))[4]).toBe('loaded');
      expect(await snapshot(fresh)).toMatchObject({ cl: '', c: '1', v: '10' });
    });

    it('the selection script enforces the shared learned limit written here', async () => {
      const providerId = randomUUID();
      const keyId = randomUUID();
      const keys = learnKeys(providerId, keyId);
      await run(keys, on429('concurrency', 3)); // 8 → 2
      const select = selectionScript(null);
      const take = () => {
        const inputs = composeInputs(
          null,
          selectionInputs(
            providerId,
            [
              {
                keyId,
                priority: 1,
                maxRpm: null,
                maxTpm: null,
                concurrency: { kind: 'learned', initial: 8 },
                dbCooldownUntilMs: 0,
              },
            ],
            randomUUID(),
            30_000,
            86_400_000,
          ),
        );
        return impl.store.run<SelectionResult>(select, inputs.keys, inputs.args);
      };
      expect((await take())[0]).toBe(1);
      expect((await take())[0]).toBe(1);
      expect((await take()).slice(0, 2)).toEqual([0, 'saturated']);
    });
  });

  describe('retreat gate (token bucket inside the selection script)', () => {
    const providerScript = selectionScript(RETREAT_GATE);
    const attempt = (
      providerId: string,
      keyId: string,
      args: (string | number)[],
      script = providerScript,
      gateKeys = [retreatStateKey(providerId)],
    ) => {
      const inputs = composeInputs(
        { keys: gateKeys, args },
        selectionInputs(
          providerId,
          [
            {
              keyId,
              priority: 1,
              maxRpm: null,
              maxTpm: null,
              concurrency: { kind: 'none' },
              dbCooldownUntilMs: 0,
            },
          ],
          randomUUID(),
          30_000,
          86_400_000,
        ),
      );
      return impl.store.run<SelectionResult>(script, inputs.keys, inputs.args);
    };

    it('check refuses with provider_rate and the time to the next token; commit takes one; tokens refill', async () => {
      const p = randomUUID();
      const k = randomUUID();
      // 60 rpm = 1 token / s, burst 3: the four attempts, and the two after the refill, may take up
      // to ~1 s on a busy machine before a token refills (with 100 ms per token they could not)
      const args = [60, 3, 1];
      for (let i = 0; i < 3; i++) expect((await attempt(p, k, args))[0]).toBe(1);
      const refused = await attempt(p, k, args);
      expect(refused.slice(0, 2)).toEqual([0, 'gate:provider_rate']);
      expect(refused[2]).toBeGreaterThan(0);
      expect(refused[2]).toBeLessThanOrEqual(1000);
      await sleep(1030);
      expect((await attempt(p, k, args))[0]).toBe(1);
      expect((await attempt(p, k, args))[1]).toBe('gate:provider_rate');
    });

    it('no token is taken when no key is chosen (commit runs only after a selection)', async () => {
      const p = randomUUID();
      const k = randomUUID();
      const args = [60, 1, 1];
      const saturated = composeInputs(
        { keys: [retreatStateKey(p)], args },
        selectionInputs(
          p,
          [
            {
              keyId: k,
              priority: 1,
              maxRpm: null,
              maxTpm: null,
              concurrency: { kind: 'fixed', limit: 0 },
              dbCooldownUntilMs: 0,
            },
          ],
          randomUUID(),
          30_000,
          86_400_000,
        ),
      );
      expect((await impl.store.run<SelectionResult>(providerScript, saturated.keys, saturated.args))[1]).toBe(
        'saturated',
      );
      expect((await attempt(p, k, args))[0]).toBe(1); // the single token is still there
      expect((await attempt(p, k, args))[1]).toBe('gate:provider_rate');
    });

    it('no provider rpm: no bucket; retreat disabled: the factor is ignored', async () => {
      const p = randomUUID();
      for (let i = 0; i < 20; i++) expect((await attempt(p, randomUUID(), [0, 0, 1]))[0]).toBe(1);
      await impl.store.run(hset, [retreatStateKey(p)], ['st', 1, 'f', 100]);
      for (let i = 0; i < 5; i++) expect((await attempt(p, randomUUID(), [600, 5, 0]))[0]).toBe(1);
    });

    it('applies the shared retreat factor to rate and capacity; a retreating provider without rpm uses its observed base', async () => {
      const p = randomUUID();
      const k = randomUUID();
      const rec = (n: number, e: number, base: number) =>
        impl.store.run(
          retreatRecordScript,
          [retreatStateKey(p), retreatWindowKey(p)],
          [n, e, 60_000, 10, 1000, 200, 60_000, 500, 50, 100, 1000, base, 1],
        );
      const r = await rec(100, 50, 6000); // 50 % 429s: accepted 50/min → 45 rpm = 7 ‰; min factor 50 ‰
      expect(r.slice(0, 5)).toEqual([1, 50, 100, 50, 'enter']);
      // provider 1200 rpm, burst 40 → in retreat: 60 rpm (1 token / s), capacity 2; the cut emptied
      // the bucket. (At 6000 rpm — 1 token / 200 ms — the '> 100' bounds below needed each call
      // within 100 ms of the previous one, which a busy machine does not promise.)
      const args = [1200, 40, 1];
      const first = await attempt(p, k, args);
      expect(first[1]).toBe('gate:provider_rate');
      expect(first[2]).toBeGreaterThan(500);
      expect(first[2]).toBeLessThanOrEqual(1000);
      await sleep(2250); // 2.25 tokens accrue, capacity 2 keeps 2
      expect((await attempt(p, k, args))[0]).toBe(1);
      expect((await attempt(p, k, args))[0]).toBe(1);
      const refused = await attempt(p, k, args);
      expect(refused[1]).toBe('gate:provider_rate');
      expect(refused[2]).toBeGreaterThan(500);
      expect(refused[2]).toBeLessThanOrEqual(1000);
      // rpm-less provider: the observed base (answers per minute when it retreated) applies
      const q = randomUUID();
      const recQ = await impl.store.run(
        retreatRecordScript,
        [retreatStateKey(q), retreatWindowKey(q)],
        [600, 300, 60_000, 10, 1000, 200, 60_000, 500, 50, 100, 1000, 0, 1],
      );
      expect(recQ.slice(0, 7)).toEqual([1, 450, 600, 300, 'enter', 0, 600]); // ob 600 rpm, factor 450 ‰ → 270 rpm
      const empty = await attempt(q, randomUUID(), [0, 0, 1]);
      expect(empty[1]).toBe('gate:provider_rate');
      expect(empty[2]).toBeGreaterThan(150);
      expect(empty[2]).toBeLessThanOrEqual(Math.ceil(60000 / 270));
    });

    it('composes with the relay queue gate (combineGates): fixed shape, both halves', async () => {
      const combined = combineGates([QUEUE_GATE, RETREAT_GATE]);
      const script = selectionScript(combined);
      const p = randomUUID();
      const k = randomUUID();
      const [wait, jobs, , tags] = queueKeys(p);
      const keys = [wait, jobs, grantBoxKey(p), tags, retreatStateKey(p)];
      expect((await attempt(p, k, [3, 0, '', '', 120, 1, 1], script, keys))[0]).toBe(1);
      expect((await attempt(p, k, [3, 0, '', '', 120, 1, 1], script, keys))[1]).toBe('gate:provider_rate');
    });
  });

  describe('retreat recorder (sliding window + state machine)', () => {
    const P = (base: number, enabled = 1, holdMs = 300, stepMs = 100) => [
      10_000,
      10,
      1000,
      200,
      holdMs,
      500,
      50,
      500,
      stepMs,
      base,
      enabled,
    ];
    it('NORMAL → RETREAT → RECOVER → NORMAL, and the snapshot reads the same', async () => {
      const p = randomUUID();
      const keys = [retreatStateKey(p), retreatWindowKey(p)];
      const rec = (n: number, e: number, enabled = 1) =>
        impl.store.run(retreatRecordScript, keys, [n, e, ...P(600, enabled)]);
      expect((await rec(9, 9))[4]).toBe(''); // below min samples
      const enter = await rec(11, 0); // 9/20 = 45 % → RETREAT; accepted 11 per 10 s = 66 rpm → 59 rpm = 99 ‰
      expect(enter).toEqual([1, 99, 20, 9, 'enter', 0, 600, 66]);
      const snap = await impl.store.run(retreatSnapshotScript, keys, [10_000]);
      expect(snap.slice(0, 4)).toEqual(['1', '99', '20', '9']);
      expect(Number(snap[4])).toBeGreaterThan(0);
      // still 45 % in the window: no recovery, no deeper cut within the same window
      expect((await rec(1, 0))[4]).toBe('');
      // the window rolls over (10 s is long for a test): emulate by a new provider window with clean answers
      const q = randomUUID();
      const qKeys = [retreatStateKey(q), retreatWindowKey(q)];
      await impl.store.run(hset, [qKeys[0]!], ['st', 1, 'f', 400, 'since', 1, 'cut', 1]);
      const recQ = (n: number, e: number) => impl.store.run(retreatRecordScript, qKeys, [n, e, ...P(600)]);
      expect((await recQ(20, 0))[4]).toBe(''); // calm starts
      await sleep(320);
      expect((await recQ(1, 0)).slice(0, 5)).toEqual([2, 400, 21, 0, 'recover']);
      await sleep(110);
      expect((await recQ(1, 0)).slice(0, 5)).toEqual([2, 900, 22, 0, 'step']);
      await sleep(110);
      expect((await recQ(1, 0)).slice(0, 5)).toEqual([0, 1000, 23, 0, 'normal']);
      // disabling retreat returns a retreating provider to NORMAL at once
      expect((await rec(1, 0, 0)).slice(0, 5)).toEqual([0, 1000, 22, 9, 'disabled']);
    });

    it('answers leave the window after it slides', async () => {
      const p = randomUUID();
      const keys = [retreatStateKey(p), retreatWindowKey(p)];
      const args = (n: number, e: number) => [n, e, 500, 1000, 1000, 200, 300, 500, 50, 500, 100, 600, 1];
      expect((await impl.store.run(retreatRecordScript, keys, args(5, 2))).slice(2, 4)).toEqual([5, 2]);
      await sleep(600);
      expect((await impl.store.run(retreatRecordScript, keys, args(1, 0))).slice(2, 4)).toEqual([1, 0]);
    });
  });
});
