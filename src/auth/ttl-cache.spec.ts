import { describe, expect, it } from 'vitest';
import { TtlCache } from './ttl-cache.js';

describe('TtlCache', () => {
  it('expires entries after the TTL', () => {
    let now = 1000;
    const cache = new TtlCache<string>(10, 5000, () => now);
    cache.set('a', 'A');
    now += 4999;
    expect(cache.get('a')).toBe('A');
    now += 1;
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('keeps an expired entry for keepStaleMs: get misses, getStale returns it with its age', () => {
    let now = 1000;
    const cache = new TtlCache<string>(10, 5000, () => now, 10_000);
    cache.set('a', 'A');
    now += 6000;
    expect(cache.get('a')).toBeUndefined();
    expect(cache.getStale('a')).toEqual({ value: 'A', ageMs: 6000 });
    now += 8999;
    expect(cache.getStale('a')).toEqual({ value: 'A', ageMs: 14_999 });
    cache.deleteWhere((v) => v === 'A');
    expect(cache.getStale('a')).toBeUndefined();
    cache.set('b', 'B');
    now += 15_000;
    expect(cache.get('b')).toBeUndefined();
    expect(cache.getStale('b')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('stays within its bound by evicting the oldest entries', () => {
    const cache = new TtlCache<number>(3, 60_000);
    for (let i = 0; i < 10; i++) cache.set(`k${i}`, i);
    expect(cache.size).toBe(3);
    expect(cache.get('k6')).toBeUndefined();
    expect([cache.get('k7'), cache.get('k8'), cache.get('k9')]).toEqual([7, 8, 9]);
  });

  it('re-setting a key refreshes it rather than duplicating it', () => {
    const cache = new TtlCache<number>(2, 60_000);
    cache.set('a', 1);
    cache.set('b', 2);
    cache.set('a', 3);
    cache.set('c', 4);
    expect(cache.get('a')).toBe(3);
    expect(cache.get('b')).toBeUndefined();
  });

  it('deleteWhere removes matching values only', () => {
    const cache = new TtlCache<{ user: string }>(10, 60_000);
    cache.set('1', { user: 'u1' });
    cache.set('2', { user: 'u2' });
    cache.set('3', { user: 'u1' });
    expect(cache.deleteWhere((v) => v.user === 'u1')).toBe(2);
    expect(cache.get('2')).toEqual({ user: 'u2' });
    expect(cache.size).toBe(1);
  });
});
