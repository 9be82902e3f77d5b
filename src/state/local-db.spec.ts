import { describe, expect, it } from 'vitest';
import { LocalDb, SortedSet } from './local-db.js';

describe('SortedSet', () => {
  it('orders by score then member, like a Redis sorted set', () => {
    const z = new SortedSet();
    z.add(3, 'c');
    z.add(1, 'b');
    z.add(1, 'a');
    z.add(2, 'x');
    expect(z.range(0, -1).map((i) => i.member)).toEqual(['a', 'b', 'x', 'c']);
    expect(z.add(0, 'c')).toBe(0); // re-scoring an existing member
    expect(z.range(0, 0)[0]).toEqual({ score: 0, member: 'c' });
  });

  it('counts and removes by inclusive score range', () => {
    const z = new SortedSet();
    for (let i = 1; i <= 10; i++) z.add(i, `m${i}`);
    expect(z.count(3, 5)).toBe(3);
    expect(z.removeRangeByScore(-Infinity, 4)).toBe(4);
    expect(z.size).toBe(6);
    expect(z.score('m3')).toBeUndefined();
    expect(z.range(-2, -1).map((i) => i.member)).toEqual(['m9', 'm10']);
  });
});

describe('LocalDb', () => {
  it('expires keys at their deadline on the script clock', () => {
    const db = new LocalDb();
    db.now = 1000;
    db.set('a', '1', 500);
    db.hset('h', { f: 1 });
    db.pexpire('h', 100);
    db.now = 1099;
    expect(db.get('a')).toBe('1');
    expect(db.pttl('h')).toBe(1);
    db.now = 1100;
    expect(db.hget('h', 'f')).toBeNull();
    db.now = 1500;
    expect(db.get('a')).toBeNull();
    expect(db.pttl('a')).toBe(-2);
  });

  it('counts with incrby and hincrby from zero', () => {
    const db = new LocalDb();
    expect(db.incrby('n', 2)).toBe(2);
    expect(db.incrby('n', 3)).toBe(5);
    expect(db.hincrby('h', 'x', -1)).toBe(-1);
    expect(db.hgetall('h')).toEqual({ x: '-1' });
  });
});

describe('LocalDb.zfirst', () => {
  it('is zrange(key, 0, 0)[0]: the lowest (score, member), undefined for a missing or emptied set', () => {
    const db = new LocalDb();
    expect(db.zfirst('z')).toBeUndefined();
    db.zadd('z', 5, 'b');
    db.zadd('z', 5, 'a');
    db.zadd('z', 9, 'c');
    expect(db.zfirst('z')).toEqual(db.zrange('z', 0, 0)[0]);
    expect(db.zfirst('z')).toEqual({ score: 5, member: 'a' });
    db.zremrangebyscore('z', -Infinity, 10);
    expect(db.zfirst('z')).toBeUndefined();
  });
});
