import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AtomicStore,
  MemoryAtomicStore,
  RedisAtomicStore,
  type AtomicScript,
} from '../../src/state/atomic-store.js';
import { PriorityQueue, queueKeys, StorePriorityQueue } from '../../src/state/priority-queue.js';
import { MemoryPubSub, PubSub, RedisPubSub } from '../../src/state/pub-sub.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * One contract, two implementations: every case runs against the in-process port and the Redis one.
 * The sample script is a bounded counter ("take one if below the limit"), the shape of every
 * admission script that later modules write.
 */
const takeIfBelow: AtomicScript<[number, number]> = {
  name: 'take-if-below',
  lua: `
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local current = tonumber(redis.call('GET', KEYS[1]) or '0')
    local limit = tonumber(ARGV[1])
    if current >= limit then return {0, current} end
    current = redis.call('INCR', KEYS[1])
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
    return {1, current}
  `,
  local(db, keys, args) {
    const current = Number(db.get(keys[0]!) ?? '0');
    const limit = Number(args[0]);
    if (current >= limit) return [0, current];
    const next = db.incrby(keys[0]!, 1);
    db.pexpire(keys[0]!, Number(args[1]));
    return [1, next];
  },
};

interface Impl {
  name: string;
  /** The Redis prefix (redis implementation only). */
  prefix?: string;
  store: AtomicStore;
  pubsub: PubSub;
  queue: PriorityQueue;
  close(): Promise<void>;
}

async function memoryImpl(): Promise<Impl> {
  const store = new MemoryAtomicStore();
  const queue = new StorePriorityQueue(store);
  return { name: 'memory', store, pubsub: new MemoryPubSub(), queue, close: async () => store.close() };
}

async function redisImpl(): Promise<Impl> {
  const prefix = uniqueName('fgports');
  const command = new Redis(TEST_REDIS_URL, { enableOfflineQueue: true });
  const subscriber = new Redis(TEST_REDIS_URL);
  const store = new RedisAtomicStore(command, prefix);
  const queue = new StorePriorityQueue(store);
  return {
    name: 'redis',
    prefix,
    store,
    pubsub: new RedisPubSub(command, subscriber, prefix),
    queue,
    close: async () => {
      await queue.close();
      await dropRedisPrefix(prefix);
      command.disconnect();
      subscriber.disconnect();
    },
  };
}

describe.each([
  ['memory', memoryImpl],
  ['redis', redisImpl],
] as const)('storage ports contract (%s)', (_name, make) => {
  let impl: Impl;
  beforeAll(async () => {
    impl = await make();
  });
  afterAll(async () => {
    await impl?.close();
  });

  describe('AtomicStore', () => {
    it('runs a script atomically: 200 concurrent takes against a limit of 50 admit exactly 50', async () => {
      const key = `counter:${randomUUID()}`;
      const results = await Promise.all(
        Array.from({ length: 200 }, () => impl.store.run(takeIfBelow, [key], [50, 60_000])),
      );
      expect(results.filter(([ok]) => ok === 1)).toHaveLength(50);
      expect(new Set(results.filter(([ok]) => ok === 1).map(([, n]) => n)).size).toBe(50); // no two share a count
    });

    it('expires keys after their TTL', async () => {
      const key = `counter:${randomUUID()}`;
      expect(await impl.store.run(takeIfBelow, [key], [1, 100])).toEqual([1, 1]);
      expect(await impl.store.run(takeIfBelow, [key], [1, 100])).toEqual([0, 1]);
      await new Promise((r) => setTimeout(r, 150));
      expect(await impl.store.run(takeIfBelow, [key], [1, 100])).toEqual([1, 1]);
    });
  });

  describe('PubSub', () => {
    it('delivers to every subscriber of a channel and stops after unsubscribe', async () => {
      const channel = `ch:${randomUUID()}`;
      const a: string[] = [];
      const b: string[] = [];
      const offA = await impl.pubsub.subscribe(channel, (m) => a.push(m));
      const offB = await impl.pubsub.subscribe(channel, (m) => b.push(m));
      await impl.pubsub.publish(channel, 'one');
      await waitFor(() => a.length === 1 && b.length === 1);
      await offA();
      await impl.pubsub.publish(channel, 'two');
      await waitFor(() => b.length === 2);
      expect(a).toEqual(['one']);
      expect(b).toEqual(['one', 'two']);
      await offB();
    });
  });

  describe('PriorityQueue', () => {
    it('hands out jobs by priority, FIFO within a priority', async () => {
      const q = `q-${randomUUID()}`;
      await impl.queue.add(q, { id: 'low-1', priority: 4, data: { n: 1 } });
      await impl.queue.add(q, { id: 'normal-1', priority: 3, data: { n: 2 } });
      await impl.queue.add(q, { id: 'low-2', priority: 4, data: { n: 3 } });
      await impl.queue.add(q, { id: 'urgent-1', priority: 1, data: { n: 4 } });
      await impl.queue.add(q, { id: 'normal-2', priority: 3, data: { n: 5 } });
      expect(await impl.queue.counts(q, [1, 2, 3, 4])).toEqual({ 1: 1, 2: 0, 3: 2, 4: 2 });
      const order: string[] = [];
      for (let job = await impl.queue.take(q); job; job = await impl.queue.take(q)) order.push(job.id);
      expect(order).toEqual(['urgent-1', 'normal-1', 'normal-2', 'low-1', 'low-2']);
      expect(await impl.queue.counts(q, [1, 2, 3, 4])).toEqual({ 1: 0, 2: 0, 3: 0, 4: 0 });
    });

    it('exposes its waiting set to atomic scripts (who of priority ≤ p is waiting)', async () => {
      const q = `q-${randomUUID()}`;
      const waitingAtOrAbove: AtomicScript<number> = {
        name: 'waiting-at-or-above',
        lua: `return redis.call('ZCOUNT', KEYS[1], 0, (tonumber(ARGV[1]) + 1) * 4294967296 - 1)`,
        local: (db, keys, args) => db.zcount(keys[0]!, 0, (Number(args[0]) + 1) * 4294967296 - 1),
      };
      await impl.queue.add(q, { id: 'n', priority: 3, data: {} });
      await impl.queue.add(q, { id: 'l', priority: 4, data: {} });
      const [key] = queueKeys(q);
      expect(await impl.store.run(waitingAtOrAbove, [key], [1])).toBe(0);
      expect(await impl.store.run(waitingAtOrAbove, [key], [3])).toBe(1);
      expect(await impl.store.run(waitingAtOrAbove, [key], [4])).toBe(2);
      await impl.queue.take(q);
      expect(await impl.store.run(waitingAtOrAbove, [key], [4])).toBe(1);
    });

    it('removes a waiting job, and reports a taken one as gone', async () => {
      const q = `q-${randomUUID()}`;
      await impl.queue.add(q, { id: 'a', priority: 2, data: {} });
      await impl.queue.add(q, { id: 'b', priority: 2, data: { keep: true } });
      expect(await impl.queue.remove(q, 'a')).toBe(true);
      const job = await impl.queue.take<{ keep: boolean }>(q);
      expect(job).toMatchObject({ id: 'b', priority: 2, data: { keep: true } });
      expect(job!.enqueuedAt).toBeGreaterThan(Date.now() - 10_000);
      expect(await impl.queue.remove(q, 'b')).toBe(false);
      expect(await impl.queue.take(q)).toBeNull();
    });

    it('drops jobs past their expiry instead of handing them out', async () => {
      const q = `q-${randomUUID()}`;
      await impl.queue.add(q, { id: 'gone', priority: 1, data: {}, expiresAt: Date.now() + 30 });
      await impl.queue.add(q, { id: 'live', priority: 2, data: {}, expiresAt: Date.now() + 60_000 });
      await impl.queue.add(q, { id: 'forever', priority: 3, data: {} });
      await new Promise((r) => setTimeout(r, 60));
      expect((await impl.queue.take(q))?.id).toBe('live');
      expect((await impl.queue.take(q))?.id).toBe('forever');
      expect(await impl.queue.take(q)).toBeNull();
      expect(await impl.queue.counts(q, [1, 2, 3, 4])).toEqual({ 1: 0, 2: 0, 3: 0, 4: 0 });
    });

    it.runIf(_name === 'redis')("keeps its keys under Floodgate's prefix in its own layout", async () => {
      const q = `q-${randomUUID()}`;
      await impl.queue.add(q, { id: 'a', priority: 2, data: { x: 1 } });
      const redis = new Redis(TEST_REDIS_URL);
      try {
        const keys = (await redis.keys(`*${q}*`)).sort();
        expect(keys).toEqual([
          `${impl.prefix}:fq:{${q}}:jobs`,
          `${impl.prefix}:fq:{${q}}:vt`,
          `${impl.prefix}:fq:{${q}}:wait`,
        ]);
        expect(await redis.type(`${impl.prefix}:fq:{${q}}:vt`)).toBe('hash');
        expect(await redis.pttl(`${impl.prefix}:fq:{${q}}:vt`)).toBeGreaterThan(3_500_000);
        expect(await redis.type(`${impl.prefix}:fq:{${q}}:wait`)).toBe('zset');
        expect(await redis.type(`${impl.prefix}:fq:{${q}}:jobs`)).toBe('hash');
      } finally {
        redis.disconnect();
      }
    });

    it('fair share: teams of weight 3 and 1 keeping a backlog get 75 % / 25 % of 400 takes', async () => {
      const q = `q-${randomUUID()}`;
      let n = 0;
      const add = (team: string) =>
        impl.queue.add(q, {
          id: `${team}-${n++}`,
          priority: 3,
          data: { team },
          flow: `t:${team}`,
          weight: team === 'a' ? 3 : 1,
        });
      for (let i = 0; i < 8; i++) {
        await add('a');
        await add('b');
      }
      const served = { a: 0, b: 0 };
      for (let i = 0; i < 400; i++) {
        const job = await impl.queue.take<{ team: 'a' | 'b' }>(q);
        served[job!.data.team]++;
        await add(job!.data.team);
      }
      expect(served).toEqual({ a: 300, b: 100 });
    });

    it('fair share: the Lua and LocalDb halves give the same tags, order and aging (random sequence)', async () => {
      const q = `q-${randomUUID()}`;
      const twin = new StorePriorityQueue(new MemoryAtomicStore());
      let seed = 7;
      const r = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
      const trace = async (queue: PriorityQueue, name: string) => {
        seed = 7;
        const out: unknown[] = [];
        const ids: string[] = [];
        for (let i = 0; i < 300; i++) {
          const op = r();
          if (op < 0.5) {
            const id = `j${i}`;
            ids.push(id);
            const team = ['a', 'b', 'c'][Math.floor(r() * 3)]!;
            const tag = await queue.add(name, {
              id,
              priority: 1 + Math.floor(r() * 4),
              data: i,
              flow: team === 'c' ? undefined : `t:${team}`,
              weight: team === 'a' ? 3 : team === 'b' ? 1000 : undefined,
            });
            out.push(['add', id, tag]);
          } else if (op < 0.8) {
            const job = await queue.take(name);
            out.push(['take', job?.id ?? null, job?.priority ?? null]);
          } else if (op < 0.9) {
            const id = ids[Math.floor(r() * ids.length)] ?? 'none';
            out.push(['promote', id, await queue.promote(name, id)]);
          } else {
            const id = ids[Math.floor(r() * ids.length)] ?? 'none';
            out.push(['remove', id, await queue.remove(name, id)]);
          }
        }
        return out;
      };
      const here = await trace(impl.queue, q);
      const local = await trace(twin, q);
      expect(here).toEqual(local);
      expect(
        here.filter((e) => (e as unknown[])[0] === 'take' && (e as unknown[])[1] !== null).length,
      ).toBeGreaterThan(50);
    });

    it('fair share: an empty queue forgets its tags; a clock past 2³¹ shifts every tag down', async () => {
      const q = `q-${randomUUID()}`;
      expect(await impl.queue.add(q, { id: 'a1', priority: 3, data: 0, flow: 't:a' })).toBe(0);
      expect(await impl.queue.add(q, { id: 'a2', priority: 3, data: 0, flow: 't:a' })).toBe(10_000);
      await impl.queue.take(q);
      await impl.queue.take(q);
      expect(await impl.queue.add(q, { id: 'a3', priority: 3, data: 0, flow: 't:a' })).toBe(0);
      const [wait, , , tags] = queueKeys(q);
      const big = 0x80000000;
      await impl.store.run(
        {
          name: 'test-fair-clock',
          lua: `redis.call('HSET', KEYS[1], 'v', ARGV[1], 't:a', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], 'a3')
return 1`,
          local(db, keys, args) {
            db.hset(keys[0]!, { v: args[0]!, 't:a': args[1]! });
            db.zadd(keys[1]!, Number(args[2]), 'a3');
            return 1;
          },
        },
        [tags, wait],
        [big + 5, big + 20_000, 3 * 0x100000000 + big + 10_000],
      );
      expect(await impl.queue.add(q, { id: 'b1', priority: 3, data: 0, flow: 't:b' })).toBe(0);
      expect(await impl.queue.add(q, { id: 'a4', priority: 3, data: 0, flow: 't:a' })).toBe(20_000 - 5);
      const order: string[] = [];
      for (let job = await impl.queue.take(q); job; job = await impl.queue.take(q)) order.push(job.id);
      expect(order).toEqual(['b1', 'a3', 'a4']);
    });
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
