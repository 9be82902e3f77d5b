import { describe, expect, it } from 'vitest';
import type { Principal } from '../../common/principal.js';
import { MemoryAtomicStore } from '../../state/atomic-store.js';
import { ownedBy, RESPONSE_OWNER_TTL_MS, ResponseOwners } from './response-owners.js';

const owner = { providerId: 'p1', keyId: 'k1', apiKeyId: 'ck1', userId: 'u1' };
const principal = (userId: string, apiKeyId: string | null) => ({ userId, apiKeyId }) as Principal;

describe('ResponseOwners (in-process store)', () => {
  it('remembers, finds and forgets an owner, with a 30-day TTL', async () => {
    const store = new MemoryAtomicStore();
    try {
      const owners = new ResponseOwners(store);
      expect(await owners.find('resp_1')).toBeNull();
      owners.remember('resp_1', owner);
      expect(await owners.find('resp_1')).toEqual(owner);
      const ttl = store.db.pttl('resp:resp_1');
      expect(ttl).toBeGreaterThan(RESPONSE_OWNER_TTL_MS - 60_000);
      expect(ttl).toBeLessThanOrEqual(RESPONSE_OWNER_TTL_MS);
      owners.remember('resp_2', { ...owner, apiKeyId: null });
      expect((await owners.find('resp_2'))?.apiKeyId).toBeNull();
      await owners.forget('resp_1');
      expect(await owners.find('resp_1')).toBeNull();
      // a record that is not ours reads as unknown
      store.db.set('resp:resp_3', 'garbage');
      expect(await owners.find('resp_3')).toBeNull();
    } finally {
      store.close();
    }
  });

  it('the owner is the client key that created it (a JWT caller: the user, without a key)', () => {
    expect(ownedBy(owner, principal('u1', 'ck1'))).toBe(true);
    expect(ownedBy(owner, principal('u1', 'ck2'))).toBe(false);
    expect(ownedBy(owner, principal('u2', 'ck1'))).toBe(false);
    expect(ownedBy(owner, principal('u1', null))).toBe(false);
    const jwt = { ...owner, apiKeyId: null };
    expect(ownedBy(jwt, principal('u1', null))).toBe(true);
    expect(ownedBy(jwt, principal('u1', 'ck1'))).toBe(false);
  });
});
