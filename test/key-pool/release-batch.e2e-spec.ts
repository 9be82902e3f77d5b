import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashTag, ReleaseBatcher } from '../../src/key-pool/infrastructure/release-batcher.js';
import {
  decodeRelease,
  encodeRelease,
  releaseScript,
} from '../../src/key-pool/infrastructure/release.script.js';
import { keyNames } from '../../src/key-pool/infrastructure/key-selection.script.js';
import {
  MemoryAtomicStore,
  RedisAtomicStore,
  type AtomicScript,
  type ScriptValue,
} from '../../src/state/atomic-store.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * Issue 18: the answer path's releases are coalesced per instance (ReleaseBatcher). An idle lane
 * sends a release at once; the releases that arrive while it is in flight go together as ONE call
 * when it returns, each with the reply it would have had alone; their `sent` callbacks run when
 * that call is written (the dispatcher's hand-off follows it on the connection). The batch script's
 * exactness (each release in it ≡ the same release alone ≡ the TypeScript half) is held by
 * test/adaptive/report-equivalence.e2e-spec.ts.
 */
class CountingStore extends RedisAtomicStore {
  readonly calls: string[] = [];
  override run<R extends ScriptValue>(
    script: AtomicScript<R>,
    keys: string[],
    args: (string | number)[],
  ): Promise<R> {
    this.calls.push(script.name);
    return super.run(script, keys, args);
  }
}

describe('release batching (ReleaseBatcher, distributed)', () => {
  let client: Redis;
  const prefix = uniqueName('fgrb');
  const script = releaseScript(null);

  beforeAll(() => {
    client = new Redis(TEST_REDIS_URL);
  });
  afterAll(async () => {
    await dropRedisPrefix(prefix);
    client?.disconnect();
  });

  const input = (providerId: string, keyId: string, leaseId: string) =>
    encodeRelease({
      providerId,
      keyId,
      leaseId,
      tokens: 0,
      cooldownMs: 0,
      notSent: false,
      hashTtlMs: 86_400_000,
      tpmBuckets: true,
    });

  it('one release in flight: the next ones wait and go as one call, each with its own reply', async () => {
    const store = new CountingStore(client, prefix);
    const batcher = new ReleaseBatcher(store);
    // key k<i> holds 3 leases; each release frees one of key k<i>'s
    const n = 9;
    const far = Date.now() + 600_000;
    for (let i = 0; i < n; i++) {
      const inf = `${prefix}:${keyNames('pb', `k${i % 3}`, true, false)[3]}`;
      await client.zadd(inf, far, `l${i}`);
    }
    const order: string[] = [];
    const sending = Array.from({ length: n }, (_, i) => {
      const { keys, args } = input('pb', `k${i % 3}`, `l${i}`);
      const s = batcher.run(script, keys, args, () => order.push(`sent l${i}`));
      order.push(`${s.queued ? 'queued' : 'written'} l${i}`);
      return s;
    });
    expect(sending.map((s) => s.queued)).toEqual([false, ...Array<boolean>(n - 1).fill(true)]);
    expect(batcher.waiting).toBe(n - 1);
    const replies = (await Promise.all(sending.map((s) => s.reply))).map(decodeRelease);
    // the first alone, the other eight in one batch call
    expect(store.calls).toEqual([script.name, script.batch.name]);
    expect(order.slice(0, n)).toEqual(
      Array.from({ length: n }, (_, i) => `${i === 0 ? 'written' : 'queued'} l${i}`),
    );
    expect(order.slice(n)).toEqual(Array.from({ length: n - 1 }, (_, i) => `sent l${i + 1}`));
    // in order: key k<i%3>'s leases fall 3 → 2 → 1 → 0
    expect(replies.map((r) => r.inFlight)).toEqual([2, 2, 2, 1, 1, 1, 0, 0, 0]);
    expect(replies.every((r) => r.nowMs > 0 && r.cooldownUntilMs === 0)).toBe(true);
    // idle again: the next release is written at once
    expect(batcher.waiting).toBe(0);
    const { keys, args } = input('pb', 'k0', 'gone');
    const again = batcher.run(script, keys, args, () => undefined);
    expect(again.queued).toBe(false);
    await again.reply;
    expect(store.calls).toHaveLength(3);
  });

  it('a failing batch call rejects every release in it (each is then retried as unconfirmed)', async () => {
    const store = new CountingStore(client, prefix);
    const batcher = new ReleaseBatcher(store);
    // a second release whose input breaks the script (a WRONGTYPE key): rejected alone in its batch.
    // The bad key is set up BEFORE the first release goes: awaiting it afterwards (on the same
    // connection) would let the first reply return and idle the lane, so the others would not batch.
    await client.set(`${prefix}:${keyNames('pc', 'bad', true, false)[3]}`, 'not a zset');
    const a = input('pc', 'k', 'a');
    const first = batcher.run(script, a.keys, a.args, () => undefined);
    expect(first.queued).toBe(false);
    const b = input('pc', 'bad', 'b');
    const c = input('pc', 'k', 'c');
    const second = batcher.run(script, b.keys, b.args, () => undefined);
    const third = batcher.run(script, c.keys, c.args, () => undefined);
    expect([second.queued, third.queued]).toEqual([true, true]);
    await first.reply;
    await expect(second.reply).rejects.toThrow(/WRONGTYPE/);
    expect(decodeRelease(await third.reply).inFlight).toBe(0);
    expect(store.calls).toEqual([script.name, script.batch.name]);
  });

  it('in process (LocalDb) a release always runs at once', async () => {
    const store = new MemoryAtomicStore();
    try {
      const batcher = new ReleaseBatcher(store);
      const runs = [0, 1, 2].map((i) => {
        const { keys, args } = input('pm', 'k', `l${i}`);
        return batcher.run(script, keys, args, () => undefined);
      });
      expect(runs.map((r) => r.queued)).toEqual([false, false, false]);
      await Promise.all(runs.map((r) => r.reply));
    } finally {
      store.close();
    }
  });

  it('Redis Cluster lanes: releases are grouped by their keys’ hash tag', () => {
    expect(hashTag('kp:{p-1}:k:a:inf')).toBe('p-1');
    expect(hashTag('kp:{}:x')).toBe('kp:{}:x');
    expect(hashTag('plain')).toBe('plain');
  });
});
