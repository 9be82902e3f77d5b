import { describe, expect, it } from 'vitest';
import { grantDue, grantKey, takeUnit, unitMember, type GrantPolicy } from './grant-rules.js';

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
