import { describe, expect, it } from 'vitest';
import { MemoryAtomicStore } from './atomic-store.js';
import { REBASE_AT } from './domain/fair-share.js';
import { PRIORITY_SCORE_FACTOR, queueKeys, StorePriorityQueue } from './priority-queue.js';

/** The queue's scripts (LocalDb halves; the Lua halves: test/relay/admission-equivalence.e2e-spec.ts). */
describe('StorePriorityQueue fair share', () => {
  it('two teams of weight 3 and 1 keeping a backlog: 75 % / 25 % of 1000 takes', async () => {
    const q = new StorePriorityQueue(new MemoryAtomicStore());
    let n = 0;
    const add = (team: string) =>
      q.add('p', {
        id: `${team}-${n++}`,
        priority: 3,
        data: { team },
        flow: `t:${team}`,
        weight: team === 'a' ? 3 : 1,
      });
    for (let i = 0; i < 16; i++) {
      await add('a');
      await add('b');
    }
    const served = { a: 0, b: 0 };
    for (let i = 0; i < 1000; i++) {
      const job = await q.take<{ team: 'a' | 'b' }>('p');
      served[job!.data.team]++;
      await add(job!.data.team);
    }
    expect(served).toEqual({ a: 750, b: 250 });
  });

  it('priority bands still dominate; FIFO within one flow', async () => {
    const q = new StorePriorityQueue(new MemoryAtomicStore());
    for (let i = 0; i < 5; i++)
      await q.add('p', { id: `low${i}`, priority: 4, data: i, flow: 't:a', weight: 1000 });
    await q.add('p', { id: 'urgent', priority: 1, data: 0, flow: 't:b', weight: 1 });
    const order: string[] = [];
    for (let j = await q.take('p'); j; j = await q.take('p')) order.push(j.id);
    expect(order).toEqual(['urgent', 'low0', 'low1', 'low2', 'low3', 'low4']);
  });

  it('aging moves a job up one level keeping its tag and its record', async () => {
    const q = new StorePriorityQueue(new MemoryAtomicStore());
    await q.add('p', { id: 'x', priority: 3, data: 'd', expiresAt: 0 });
    await q.add('p', { id: 'y', priority: 2, data: 'd' });
    expect(await q.promote('p', 'x')).toBe(true);
    expect(await q.counts('p', [2, 3])).toEqual({ 2: 2, 3: 0 });
    const first = await q.take('p');
    expect(first).toMatchObject({ id: 'x', priority: 2, data: 'd' }); // tag 0 < y's tag (same flow)
    expect(await q.promote('p', 'x')).toBe(false);
    expect(await q.promote('p', 'y')).toBe(true);
    expect(await q.promote('p', 'y')).toBe(false); // already urgent
  });

  it('an empty queue forgets its tags; a clock past REBASE_AT shifts every tag down', async () => {
    const store = new MemoryAtomicStore();
    const q = new StorePriorityQueue(store);
    expect(await q.add('p', { id: 'a1', priority: 3, data: 0, flow: 't:a' })).toBe(0);
    expect(await q.add('p', { id: 'a2', priority: 3, data: 0, flow: 't:a' })).toBe(10_000);
    await q.take('p');
    await q.take('p');
    expect(await q.add('p', { id: 'a3', priority: 3, data: 0, flow: 't:a' })).toBe(0);
    const [wait, , , tags] = queueKeys('p');
    // force a clock past the rebase point with a job waiting
    await store.run(
      {
        name: 'test-set-clock',
        lua: '',
        local(db) {
          db.hset(tags, { v: REBASE_AT + 5, 't:a': REBASE_AT + 20_000 });
          db.zadd(wait, 3 * PRIORITY_SCORE_FACTOR + REBASE_AT + 10_000, 'a3');
          return 1;
        },
      },
      [],
      [],
    );
    expect(await q.add('p', { id: 'b1', priority: 3, data: 0, flow: 't:b' })).toBe(0);
    expect(await q.add('p', { id: 'a4', priority: 3, data: 0, flow: 't:a' })).toBe(20_000 - 5);
    const order: string[] = [];
    for (let j = await q.take('p'); j; j = await q.take('p')) order.push(j.id);
    expect(order).toEqual(['b1', 'a3', 'a4']);
  });
});
