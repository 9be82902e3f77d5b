import { describe, expect, it } from 'vitest';
import { targetPlan } from './target-plan.js';

/** A seeded generator (mulberry32): the shares below are reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('targetPlan', () => {
  it('shares the first place of a tier by weight: 3:1 → 75 % ± 1 % over 100k plans', () => {
    const a = { id: 'a', tier: 1, weight: 3 };
    const b = { id: 'b', tier: 1, weight: 1 };
    const rng = seeded(42);
    let firstA = 0;
    const n = 100_000;
    for (let i = 0; i < n; i++) if (targetPlan([a, b], rng)[0] === a) firstA++;
    expect(firstA / n).toBeGreaterThan(0.74);
    expect(firstA / n).toBeLessThan(0.76);
  });

  it('shares by weight with three targets (2:1:1 → 50/25/25 % first)', () => {
    const ts = [
      { id: 'a', tier: 1, weight: 2 },
      { id: 'b', tier: 1, weight: 1 },
      { id: 'c', tier: 1, weight: 1 },
    ];
    const rng = seeded(7);
    const first: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 100_000; i++) first[targetPlan(ts, rng)[0]!.id]!++;
    expect(first.a! / 100_000).toBeCloseTo(0.5, 1);
    expect(first.b! / 100_000).toBeCloseTo(0.25, 1);
  });

  it('puts every target of a lower tier before any target of a higher one, whatever the weights', () => {
    const t2 = { id: 'heavy', tier: 2, weight: 1000 };
    const t1a = { id: 'x', tier: 1, weight: 1 };
    const t1b = { id: 'y', tier: 1, weight: 1 };
    const t3 = { id: 'z', tier: 3, weight: 5 };
    const rng = seeded(1);
    for (let i = 0; i < 1000; i++) {
      const plan = targetPlan([t3, t2, t1a, t1b], rng);
      expect(plan.map((t) => t.tier)).toEqual([1, 1, 2, 3]);
    }
  });

  it('leaves out the targets already tried, and every target appears once', () => {
    const a = { tier: 1, weight: 1 };
    const b = { tier: 1, weight: 1 };
    const c = { tier: 2, weight: 1 };
    expect(targetPlan([a, b, c], Math.random, new Set([a]))).toEqual(expect.arrayContaining([b, c]));
    expect(targetPlan([a, b, c], Math.random, new Set([a]))).toHaveLength(2);
    expect(targetPlan([a, b, c], Math.random, new Set([a, b, c]))).toEqual([]);
    expect(new Set(targetPlan([a, b, c])).size).toBe(3);
  });

  it('survives an rng that answers 0 (u = 1) and huge weights', () => {
    const a = { tier: 1, weight: 1_000_000 };
    const b = { tier: 1, weight: 1 };
    expect(targetPlan([a, b], () => 0)).toHaveLength(2);
  });
});
