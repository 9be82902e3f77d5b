import { describe, expect, it } from 'vitest';
import { IdleCollector, type HeapSizes } from './idle-collector.js';
import { InFlightRequests } from './in-flight.js';

const MB = 1024 * 1024;

/**
 * A fake heap: `total` and `young` as the test sets them. A full collection brings the total down
 * to `live` and, when `shrinks` says so, the young generation back to 1 MB (what V8 does once its
 * measured allocation rate is low); a young-generation collection changes no size.
 */
function setup(quietMs = 5000) {
  const requests = new InFlightRequests();
  const heap = { total: 100 * MB, young: 32 * MB, youngUsed: 0, live: 60 * MB, shrinks: false };
  const calls: string[] = [];
  const sizes: HeapSizes = {
    total: () => heap.total,
    young: () => heap.young,
    youngUsed: () => heap.youngUsed,
  };
  const collector = new IdleCollector(
    requests,
    quietMs,
    (options) => {
      calls.push(options?.type ?? 'major');
      heap.youngUsed = 0;
      if (options?.type === 'minor') return;
      if (heap.shrinks) heap.young = 1 * MB;
      heap.total = heap.live + heap.young;
    },
    sizes,
  );
  const count = (type: string) => calls.filter((c) => c === type).length;
  return { requests, collector, heap, calls, majors: () => count('major'), minors: () => count('minor') };
}

describe('IdleCollector', () => {
  it('after a second of quiet closes the burst with a young-generation collection, then a full pass once quiet for quietMs', () => {
    const { requests, collector, heap, calls, majors, minors } = setup();
    heap.young = 2 * MB; // young generation not grown: nothing to wait for
    requests.started = 10;
    expect(collector.tick(0)).toBe(false); // activity seen now
    expect(collector.tick(999)).toBe(false);
    expect(calls).toEqual([]);
    expect(collector.tick(1000)).toBe(false);
    expect(calls).toEqual(['minor']);
    for (let t = 2000; t < 5000; t += 1000) expect(collector.tick(t)).toBe(false);
    expect(collector.tick(5000)).toBe(true);
    expect(minors()).toBe(1);
    expect(majors()).toBeGreaterThanOrEqual(2); // at least two full collections per pass
  });

  it('young generation grown: one pass ≥ 6 s after the young-generation collection, then again 3 s apart until it shrinks', () => {
    const { requests, collector, heap, majors } = setup();
    requests.started = 1;
    collector.tick(0);
    collector.tick(1000); // young-generation collection
    // V8 measures its allocation rate over ≥ 5 s of collections: sooner, it sees the burst's tail,
    // so the heap-growth pass waits to do both at once
    for (let t = 2000; t < 7000; t += 1000) expect(collector.tick(t)).toBe(false);
    expect(collector.tick(7000)).toBe(true); // the heap grew: the pass; young generation still 32 MB
    for (let t = 8000; t < 10_000; t += 1000) expect(collector.tick(t)).toBe(false);
    heap.shrinks = true;
    expect(collector.tick(10_000)).toBe(true); // this one shrinks it
    const n = majors();
    for (let t = 11_000; t < 80_000; t += 1000) expect(collector.tick(t)).toBe(false); // done
    expect(majors()).toBe(n);
  });

  it('young generation grown: the heap-growth pass is the one that shrinks it (not a pass at quietMs and another 2 s later)', () => {
    const { requests, collector, heap, majors } = setup();
    heap.shrinks = true; // what V8 does at a collection that sees ≥ 5 s of quiet
    requests.started = 1;
    collector.tick(0);
    collector.tick(1000);
    for (let t = 2000; t < 7000; t += 1000) expect(collector.tick(t)).toBe(false);
    expect(collector.tick(7000)).toBe(true);
    expect(heap.young).toBe(1 * MB);
    const n = majors();
    for (let t = 8000; t < 60_000; t += 1000) expect(collector.tick(t)).toBe(false);
    expect(majors()).toBe(n);
  });

  it('while the young generation keeps filling after the burst (a request-log drain), its pass comes 6 s after the drain, not 6 s after the first second', () => {
    const { requests, collector, heap, calls } = setup();
    requests.started = 1;
    collector.tick(0);
    // seconds 1–5 after the last request: still allocating ~2 MB/s
    for (let t = 1000; t <= 4000; t += 1000) {
      heap.youngUsed += 2 * MB;
      expect(collector.tick(t)).toBe(false);
    }
    expect(calls).toEqual([]); // no young-generation collection yet: V8 would book the drain after it
    heap.youngUsed += 2 * MB;
    expect(collector.tick(5000)).toBe(true); // the heap-growth pass is due all the same
    heap.shrinks = true;
    // V8's window for the young generation starts at that pass
    for (let t = 6000; t < 11_000; t += 1000) expect(collector.tick(t)).toBe(false);
    expect(collector.tick(11_000)).toBe(true);
    expect(heap.young).toBe(1 * MB);
  });

  it('an idle process that keeps allocating is still collected (it waits for at most 10 checks)', () => {
    const { requests, collector, heap, majors } = setup();
    requests.started = 1;
    collector.tick(0);
    let first = -1;
    for (let t = 1000; t < 40_000 && first < 0; t += 1000) {
      heap.youngUsed += 2 * MB;
      if (collector.tick(t)) first = t;
    }
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(18_000);
    expect(majors()).toBeGreaterThanOrEqual(2);
  });

  it('waits for quietMs when that is longer than the spacing', () => {
    const { requests, collector, majors } = setup(20_000);
    requests.started = 1;
    collector.tick(0);
    for (let t = 1000; t < 20_000; t += 1000) expect(collector.tick(t)).toBe(false);
    expect(collector.tick(20_000)).toBe(true);
    expect(majors()).toBeGreaterThan(0);
  });

  it('gives up on the young generation after three passes (an idle process that keeps allocating)', () => {
    const { requests, collector } = setup(1000);
    requests.started = 1;
    collector.tick(0);
    let passes = 0;
    for (let t = 1000; t < 120_000; t += 1000) if (collector.tick(t)) passes++;
    expect(passes).toBe(5); // the heap-growth pass, three for the young generation, the late one
  });

  it('one late pass 75 s after a burst, with health probes every 10 s meanwhile, then nothing', () => {
    const { requests, collector, heap, majors } = setup();
    heap.shrinks = true;
    requests.started = 1;
    collector.tick(0);
    collector.tick(1000);
    expect(collector.tick(7000)).toBe(true); // the burst's pass
    const passTimes: number[] = [];
    for (let t = 8000; t < 300_000; t += 1000) {
      if (t % 10_000 === 0) requests.started++; // a probe: never quiet for more than 10 s
      if (collector.tick(t)) passes(t);
    }
    function passes(t: number) {
      passTimes.push(t);
    }
    // the late pass: due at 82 s, run at the first quiet moment after it (≥ 5 s after a probe)
    expect(passTimes).toEqual([85_000]);
    expect(majors()).toBeGreaterThanOrEqual(4);
  });

  it('never collects while requests keep arriving or are in flight', () => {
    const { requests, collector, calls } = setup(1000);
    for (let t = 0; t < 20_000; t += 500) {
      requests.started++;
      expect(collector.tick(t)).toBe(false);
    }
    requests.count = 1; // a long stream: nothing new starts, but one is in flight
    for (let t = 20_000; t < 40_000; t += 500) expect(collector.tick(t)).toBe(false);
    expect(calls).toEqual([]);
  });

  it('a probe or a scrape after a collection does not trigger another unless the heap grew', () => {
    const { requests, collector, heap, calls } = setup(1000);
    heap.shrinks = true;
    requests.started = 1;
    collector.tick(0);
    collector.tick(1000);
    expect(collector.tick(7000)).toBe(true);
    const n = calls.length;
    for (let t = 10_000; t < 60_000; t += 5000) {
      requests.started++; // a health probe
      collector.tick(t);
      expect(collector.tick(t + 1000)).toBe(false);
      expect(collector.tick(t + 4000)).toBe(false); // heap has not grown by 24 MB since
    }
    expect(calls.length).toBe(n); // not even the young-generation collection
    heap.total += 30 * MB; // a burst
    requests.started++;
    collector.tick(60_000);
    collector.tick(61_000);
    expect(collector.tick(67_000)).toBe(true);
  });

  it('is off with MEMORY_IDLE_GC_MS=0', () => {
    const { collector } = setup(0);
    collector.start(); // no timer: nothing to stop, nothing runs
    collector.stop();
  });
});
