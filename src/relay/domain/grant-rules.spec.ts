import { describe, expect, it } from 'vitest';
import {
  demandBlock,
  grantDue,
  grantKey,
  takeUnit,
  unitMember,
  type GrantDemand,
  type GrantPolicy,
} from './grant-rules.js';

const policy = (over: Partial<GrantPolicy> = {}): GrantPolicy => ({
  name: 'key',
  subject: 'key:1',
  kind: 1,
  limit: 600,
  windowMs: 60_000,
  cost: 1,
  keys: ['rl:{key:1}:key'],
  ...over,
});

describe('grant rules', () => {
  it('keys a grant by provider and every policy (subject, limit, window, keys)', () => {
    const a = grantKey('p1', [policy(), policy({ name: 'user', subject: 'user:1' })]);
    expect(grantKey('p1', [policy(), policy({ name: 'user', subject: 'user:1' })])).toBe(a);
    expect(grantKey('p2', [policy(), policy({ name: 'user', subject: 'user:1' })])).not.toBe(a);
    expect(grantKey('p1', [policy(), policy({ name: 'user', subject: 'user:2' })])).not.toBe(a);
    expect(grantKey('p1', [policy({ limit: 601 }), policy({ name: 'user', subject: 'user:1' })])).not.toBe(a);
    expect(grantKey('p1', [policy()])).not.toBe(a);
  });

  it('hands out units 2..B once each, never past the block', () => {
    const g = { block: 4, used: 1, createdAt: 0, lastUsedAt: 0 };
    expect([takeUnit(g, 10), takeUnit(g, 20), takeUnit(g, 30), takeUnit(g, 40)]).toEqual([2, 3, 4, null]);
    expect(g.used).toBe(4);
  });

  it('is due when idle or at its max age, and then hands out nothing', () => {
    const g = { block: 16, used: 1, createdAt: 0, lastUsedAt: 0 };
    expect(grantDue(g, 199)).toBe(false);
    expect(grantDue(g, 200)).toBe(true);
    expect(takeUnit(g, 150)).toBe(2);
    expect(takeUnit(g, 340)).toBe(3); // used at 150: not idle yet
    expect(grantDue({ ...g, lastUsedAt: 990 }, 1000)).toBe(true); // max age
    expect(takeUnit({ ...g, lastUsedAt: 990 }, 1000)).toBeNull();
  });

  it('names unit k like the scripts do', () => {
    expect(unitMember('m', 1)).toBe('m');
    expect(unitMember('m', 3)).toBe('m:3');
  });
});

describe('demandBlock (the block asked for follows the grant key’s recent requests here)', () => {
  const fresh = (at: number): GrantDemand => ({ bucketStart: at, current: 0, previous: 0 });

  it('a lone request asks for 1 (the exact admission: nothing reserved to give back)', () => {
    expect(demandBlock(fresh(0), 0, 200)).toBe(1);
    // one request every second: each one alone in its window
    const d = fresh(0);
    for (let t = 0; t < 10_000; t += 1000) expect(demandBlock(d, t, 200)).toBe(1);
  });

  it('a busy key grows to the maximum within a few requests, in order 1, 1, 2, 3, …', () => {
    const d = fresh(0);
    const wants = Array.from({ length: 40 }, (_, i) => demandBlock(d, i, 200, 32));
    expect(wants.slice(0, 5)).toEqual([1, 1, 2, 3, 4]);
    expect(wants[39]).toBe(32);
    expect(Math.max(...wants)).toBe(32);
  });

  it('counts the previous window in proportion to the part of it still in the last windowMs', () => {
    const d = fresh(0);
    for (let i = 0; i < 10; i++) demandBlock(d, 10, 200); // 10 requests in the first bucket
    // 100 ms into the next bucket: half of the previous one is still within the last 200 ms
    expect(demandBlock(d, 300, 200)).toBe(5);
    // two windows without a request: forgotten
    expect(demandBlock(d, 800, 200)).toBe(1);
  });
});
