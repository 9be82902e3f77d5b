import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onceKey, onceScript } from '../../src/alerts/infrastructure/once.script.js';
import { MemoryAtomicStore, RedisAtomicStore, type AtomicStore } from '../../src/state/atomic-store.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/** The alerts' once-claim, both halves against the same cases (docs/CONVENTIONS.md: script contract). */
describe.each(['memory', 'redis'] as const)('onceScript (%s)', (kind) => {
  let store: AtomicStore;
  let client: Redis | undefined;
  const prefix = uniqueName('fgonce');

  beforeAll(() => {
    if (kind === 'memory') store = new MemoryAtomicStore();
    else {
      client = new Redis(TEST_REDIS_URL);
      store = new RedisAtomicStore(client, prefix);
    }
  });
  afterAll(async () => {
    if (store instanceof MemoryAtomicStore) store.close();
    client?.disconnect();
    await dropRedisPrefix(prefix);
  });

  it('the first claim wins until it expires; other subjects and types are independent', async () => {
    const k = onceKey('key.cooling', 'k1');
    expect(await store.run(onceScript, [k], [300])).toBe(1);
    expect(await store.run(onceScript, [k], [300])).toBe(0);
    expect(await store.run(onceScript, [k], [300])).toBe(0);
    expect(await store.run(onceScript, [onceKey('key.cooling', 'k2')], [300])).toBe(1);
    expect(await store.run(onceScript, [onceKey('key.broken', 'k1')], [300])).toBe(1);
    await new Promise((r) => setTimeout(r, 400));
    expect(await store.run(onceScript, [k], [300])).toBe(1);
  });

  it('concurrent claims: exactly one wins', async () => {
    const k = onceKey('key.cooling', 'race');
    const replies = await Promise.all(Array.from({ length: 20 }, () => store.run(onceScript, [k], [5000])));
    expect(replies.filter((r) => r === 1)).toHaveLength(1);
  });
});
