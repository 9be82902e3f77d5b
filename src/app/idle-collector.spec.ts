import { describe, expect, it } from 'vitest';
import { IdleCollector } from './idle-collector.js';
import { InFlightRequests } from './in-flight.js';

function setup(quietMs = 5000) {
  const requests = new InFlightRequests();
  let collections = 0;
  const collector = new IdleCollector(requests, quietMs, () => collections++);
  return { requests, collector, collections: () => collections };
}

describe('IdleCollector', () => {
  it('collects only after a full quiet period, and a second pass one period later', () => {
    const { requests, collector, collections } = setup();
    requests.started = 10;
    expect(collector.tick(0)).toBe(false); // activity seen now
    expect(collector.tick(4999)).toBe(false);
    expect(collector.tick(5000)).toBe(true);
    const afterFirst = collections();
    expect(afterFirst).toBeGreaterThanOrEqual(2); // at least two full collections per pass
    expect(collector.tick(9000)).toBe(false);
    expect(collector.tick(10_000)).toBe(true); // the second pass
    expect(collector.tick(60_000)).toBe(false); // then nothing until new activity
    expect(collections()).toBeGreaterThan(afterFirst);
  });

  it('never collects while requests keep arriving or are in flight', () => {
    const { requests, collector, collections } = setup(1000);
    for (let t = 0; t < 20_000; t += 500) {
      requests.started++;
      expect(collector.tick(t)).toBe(false);
    }
    requests.count = 1; // a long stream: nothing new starts, but one is in flight
    for (let t = 20_000; t < 40_000; t += 500) expect(collector.tick(t)).toBe(false);
    expect(collections()).toBe(0);
  });

  it('a probe or a scrape after a collection does not trigger another unless the heap grew', () => {
    const { requests, collector, collections } = setup(1000);
    requests.started = 1;
    collector.tick(0);
    collector.tick(1000);
    collector.tick(2000);
    const n = collections();
    expect(n).toBeGreaterThan(0);
    requests.started++; // a health probe
    collector.tick(10_000);
    expect(collector.tick(11_000)).toBe(false); // heap has not grown by 24 MB since
    expect(collections()).toBe(n);
  });

  it('is off with MEMORY_IDLE_GC_MS=0', () => {
    const { collector } = setup(0);
    collector.start(); // no timer: nothing to stop, nothing runs
    collector.stop();
  });
});
