import { describe, expect, it } from 'vitest';
import { dispatchTag, enqueueTag, FAIR_QUANTUM, type FlowTags, quantumOf } from './fair-share.js';

/** A queue of one band: flows keep `backlog` jobs waiting; pops the smallest tag (ties: flow name). */
function simulate(weights: Record<string, number>, pops: number, backlog = 8) {
  const tags: FlowTags = { v: 0, finish: new Map() };
  const waiting: { s: number; flow: string }[] = [];
  const enqueue = (flow: string) => waiting.push({ s: enqueueTag(tags, flow, weights[flow]!), flow });
  for (const flow of Object.keys(weights)) for (let i = 0; i < backlog; i++) enqueue(flow);
  const served: Record<string, number> = {};
  const order: string[] = [];
  for (let i = 0; i < pops; i++) {
    waiting.sort((a, b) => a.s - b.s || (a.flow < b.flow ? -1 : 1));
    const head = waiting.shift()!;
    dispatchTag(tags, head.s);
    served[head.flow] = (served[head.flow] ?? 0) + 1;
    order.push(head.flow);
    enqueue(head.flow); // still backlogged
  }
  return { served, order, tags, enqueue, waiting };
}

describe('fair share tags (start-time fair queueing)', () => {
  it('weights 3:1, both backlogged: 75 % / 25 % over 1000 dispatches', () => {
    const { served } = simulate({ a: 3, b: 1 }, 1000);
    expect(served.a).toBe(750);
    expect(served.b).toBe(250);
  });

  it('equal weights alternate; 1000:1 still serves the light flow', () => {
    expect(simulate({ a: 1, b: 1 }, 1000).served).toEqual({ a: 500, b: 500 });
    const { served } = simulate({ a: 1000, b: 1 }, 10_010);
    expect(served.b).toBeGreaterThanOrEqual(9);
    expect(served.b).toBeLessThanOrEqual(11);
  });

  it('a late-arriving flow starts at the virtual clock: neither credit nor penalty beyond one quantum', () => {
    const run = simulate({ a: 1, b: 1 }, 0);
    // flow a alone for 100 dispatches
    const tags: FlowTags = { v: 0, finish: new Map() };
    let last = 0;
    for (let i = 0; i < 100; i++) {
      last = enqueueTag(tags, 'a', 1);
      dispatchTag(tags, last);
    }
    for (let i = 0; i < 4; i++) enqueueTag(tags, 'a', 1); // a keeps a backlog of 4
    const late = enqueueTag(tags, 'c', 1);
    // c's first job starts at V: behind at most a's job in service, ahead of a's backlog beyond one quantum
    expect(late).toBe(tags.v);
    expect(late).toBeGreaterThanOrEqual(last);
    expect(late - last).toBeLessThanOrEqual(quantumOf(1));
    expect(run.served).toEqual({});
  });

  it('a late flow then gets its share from then on (no catch-up burst)', () => {
    const tags: FlowTags = { v: 0, finish: new Map() };
    const waiting: { s: number; flow: string }[] = [];
    const add = (flow: string) => waiting.push({ s: enqueueTag(tags, flow, 1), flow });
    for (let i = 0; i < 4; i++) add('a');
    const pop = () => {
      waiting.sort((x, y) => x.s - y.s || (x.flow < y.flow ? -1 : 1));
      const h = waiting.shift()!;
      dispatchTag(tags, h.s);
      add(h.flow);
      return h.flow;
    };
    for (let i = 0; i < 500; i++) pop();
    for (let i = 0; i < 4; i++) add('b');
    const next = Array.from({ length: 20 }, pop);
    expect(next.filter((f) => f === 'b').length).toBeGreaterThanOrEqual(9);
    expect(next.filter((f) => f === 'b').length).toBeLessThanOrEqual(11);
  });

  it('quantum: 1e4 / weight, clamped to 1..1000', () => {
    expect(quantumOf(1)).toBe(FAIR_QUANTUM);
    expect(quantumOf(3)).toBe(3333);
    expect(quantumOf(1000)).toBe(10);
    expect(quantumOf(5000)).toBe(10);
    expect(quantumOf(0)).toBe(FAIR_QUANTUM);
    expect(quantumOf(Number.NaN)).toBe(FAIR_QUANTUM);
  });
});
