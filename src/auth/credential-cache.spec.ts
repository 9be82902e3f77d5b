import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AppConfig } from '../config/app-config.js';
import type { Principal } from '../common/principal.js';
import { MemoryPubSub } from '../state/pub-sub.js';
import { CredentialCache, type CachedKey } from './credential-cache.js';

const principal = (userId: string, keyId: string): Principal => ({
  userId,
  email: null,
  role: 'user',
  method: 'api_key',
  apiKeyId: keyId,
  apiKey: { rpm: null, tpm: null, allowedModels: null, maxPriority: 'high' },
});
const entry = (userId: string, keyId: string): CachedKey => ({
  keyId,
  userId,
  expiresAtMs: null,
  principal: principal(userId, keyId),
});
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

async function twoInstances(): Promise<[CredentialCache, CredentialCache]> {
  const bus = new MemoryPubSub();
  const a = new CredentialCache(bus);
  const b = new CredentialCache(bus);
  await a.onModuleInit();
  await b.onModuleInit();
  return [a, b];
}

describe('CredentialCache', () => {
  it('a key revoked on one instance leaves the cache of every instance', async () => {
    const [a, b] = await twoInstances();
    a.fillKey('h1', entry('u1', 'k1'), a.generation);
    b.fillKey('h1', entry('u1', 'k1'), b.generation);
    b.fillKey('h2', entry('u1', 'k2'), b.generation);
    await a.invalidate({ kind: 'api_key', id: 'k1' });
    expect(a.keys.get('h1')).toBeUndefined();
    await tick();
    expect(b.keys.get('h1')).toBeUndefined();
    expect(b.keys.get('h2')).toBeDefined();
  });

  it("a user invalidation drops all of that user's keys and their JWT subject", async () => {
    const [a, b] = await twoInstances();
    b.fillKey('h1', entry('u1', 'k1'), b.generation);
    b.fillKey('h2', entry('u2', 'k2'), b.generation);
    b.fillSubject(
      'sub-1',
      { userId: 'u1', email: null, role: 'user', disabled: false, team: null },
      b.generation,
    );
    await a.invalidate({ kind: 'user', id: 'u1' });
    await tick();
    expect(b.keys.get('h1')).toBeUndefined();
    expect(b.subjects.get('sub-1')).toBeUndefined();
    expect(b.keys.get('h2')).toBeDefined();
  });

  it('a team invalidation drops every key and JWT subject of that team on every instance, and only those', async () => {
    const [a, b] = await twoInstances();
    const team = (id: string) => ({ id, role: 'member' as const, rpm: 3, tpm: null });
    b.fillKey(
      'h1',
      { ...entry('u1', 'k1'), principal: { ...principal('u1', 'k1'), team: team('t1') } },
      b.generation,
    );
    b.fillKey(
      'h2',
      { ...entry('u2', 'k2'), principal: { ...principal('u2', 'k2'), team: team('t2') } },
      b.generation,
    );
    b.fillKey('h3', entry('u3', 'k3'), b.generation);
    b.fillSubject(
      'sub-1',
      { userId: 'u4', email: null, role: 'user', disabled: false, team: team('t1') },
      b.generation,
    );
    await a.invalidate({ kind: 'team', id: 't1' });
    await tick();
    expect(b.keys.get('h1')).toBeUndefined();
    expect(b.subjects.get('sub-1')).toBeUndefined();
    expect(b.keys.get('h2')).toBeDefined();
    expect(b.keys.get('h3')).toBeDefined();
  });

  it('a lookup that raced an invalidation is not cached (no stale revival)', async () => {
    const [a] = await twoInstances();
    const generation = a.generation; // lookup starts, reads the row…
    a.applyLocally({ kind: 'api_key', id: 'k1' }); // …the key is revoked meanwhile…
    a.fillKey('h1', entry('u1', 'k1'), generation); // …and the stale answer comes back.
    expect(a.keys.get('h1')).toBeUndefined();
    a.fillKey('h1', entry('u1', 'k1'), a.generation);
    expect(a.keys.get('h1')).toBeDefined();
  });

  it('ignores malformed messages and still works after unsubscribing', async () => {
    const bus = new MemoryPubSub();
    const a = new CredentialCache(bus);
    await a.onModuleInit();
    a.fillKey('h1', entry('u1', 'k1'), a.generation);
    await bus.publish('auth:invalidate', 'not json');
    await bus.publish('auth:invalidate', JSON.stringify({ kind: 'nope', id: 'k1' }));
    await tick();
    expect(a.keys.get('h1')).toBeDefined();
    await a.onModuleDestroy();
    await bus.publish('auth:invalidate', JSON.stringify({ kind: 'api_key', id: 'k1' }));
    await tick();
    expect(a.keys.get('h1')).toBeDefined();
  });

  describe('stale entries (for when Postgres is unreachable)', () => {
    afterEach(() => vi.useRealTimers());
    const withStaleness = (bus: MemoryPubSub, ms: number) =>
      new CredentialCache(bus, { auth: { credentialMaxStalenessMs: ms } } as AppConfig);

    it('past the TTL an entry is no longer a hit but stays available as stale until the max staleness', async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(1_000_000);
      const bus = new MemoryPubSub();
      const a = withStaleness(bus, 60_000);
      await a.onModuleInit();
      a.fillKey('h1', entry('u1', 'k1'), a.generation);
      a.fillSubject(
        's1',
        { userId: 'u1', email: null, role: 'user', disabled: false, team: null },
        a.generation,
      );
      vi.setSystemTime(1_000_000 + 10_000);
      expect(a.keys.get('h1')).toBeUndefined();
      expect(a.staleKey('h1')?.keyId).toBe('k1');
      expect(a.staleSubject('s1')?.userId).toBe('u1');
      vi.setSystemTime(1_000_000 + 60_001);
      expect(a.staleKey('h1')).toBeUndefined();
      expect(a.staleSubject('s1')).toBeUndefined();
    });

    it('a revocation received through pub/sub drops the stale entry too', async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(2_000_000);
      const bus = new MemoryPubSub();
      const a = withStaleness(bus, 60_000);
      const b = withStaleness(bus, 60_000);
      await a.onModuleInit();
      await b.onModuleInit();
      b.fillKey('h1', entry('u1', 'k1'), b.generation);
      b.fillKey('h2', entry('u2', 'k2'), b.generation);
      vi.setSystemTime(2_000_000 + 10_000);
      await a.invalidate({ kind: 'api_key', id: 'k1' });
      await tick();
      expect(b.staleKey('h1')).toBeUndefined();
      expect(b.staleKey('h2')?.keyId).toBe('k2');
    });

    it('without a configured staleness nothing is served stale', async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(3_000_000);
      const a = new CredentialCache(new MemoryPubSub());
      a.fillKey('h1', entry('u1', 'k1'), a.generation);
      vi.setSystemTime(3_000_000 + 5_001);
      expect(a.keys.get('h1')).toBeUndefined();
      expect(a.staleKey('h1')).toBeUndefined();
    });
  });
});
