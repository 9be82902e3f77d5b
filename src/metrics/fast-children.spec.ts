import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import { counterChildren, histogramChildren } from './fast-children.js';

/** Two registries, one recorded through prom-client's own children, one through the fast children. */
function pair() {
  const make = () => {
    const registry = new Registry();
    const counter = new Counter({
      name: 't_total',
      help: 'h',
      labelNames: ['provider', 'model', 'outcome'] as const,
      registers: [registry],
    });
    const histogram = new Histogram({
      name: 't_seconds',
      help: 'h',
      labelNames: ['provider', 'model'] as const,
      buckets: [0.001, 0.01, 0.1, 1],
      registers: [registry],
    });
    return { registry, counter, histogram };
  };
  return { plain: make(), fast: make() };
}

describe('fast label children', () => {
  it('record exactly what prom-client records (counts, sums, buckets, +Inf, resets, removes)', async () => {
    const { plain, fast } = pair();
    const counters = counterChildren(fast.counter);
    const histograms = histogramChildren(fast.histogram);
    const values = [0, 0.0005, 0.001, 0.005, 0.2, 3, 1e9, 0.01];
    for (const [p, m, o] of [
      ['a', 'gpt', 'ok'],
      ['a', 'gpt', 'rate_limited'],
      ['b', 'meta/*', 'ok'],
      ['a', 'gpt', 'ok'],
    ] as const) {
      for (const v of values) {
        plain.counter.labels(p, m, o).inc();
        counters.get3(p, m, o).inc();
        plain.counter.labels(p, m, o).inc(7);
        counters.get3(p, m, o).inc(7);
        plain.histogram.labels(p, m).observe(v);
        histograms.get2(p, m).observe(v);
      }
    }
    expect(await fast.registry.metrics()).toBe(await plain.registry.metrics());

    // After a reset or a remove the children start the series again, as prom-client's would.
    plain.registry.resetMetrics();
    fast.registry.resetMetrics();
    plain.counter.labels('a', 'gpt', 'ok').inc(2);
    counters.get3('a', 'gpt', 'ok').inc(2);
    plain.histogram.labels('a', 'gpt').observe(0.05);
    histograms.get2('a', 'gpt').observe(0.05);
    plain.counter.remove('a', 'gpt', 'ok');
    fast.counter.remove('a', 'gpt', 'ok');
    plain.counter.labels('a', 'gpt', 'ok').inc(3);
    counters.get3('a', 'gpt', 'ok').inc(3);
    expect(await fast.registry.metrics()).toBe(await plain.registry.metrics());
  });

  it('refuse what prom-client refuses', () => {
    const { fast } = pair();
    const counters = counterChildren(fast.counter);
    const histograms = histogramChildren(fast.histogram);
    counters.get3('a', 'b', 'c').inc();
    histograms.get2('a', 'b').observe(1);
    expect(() => counters.get3('a', 'b', 'c').inc(-1)).toThrow(/decrease/);
    expect(() => counters.get3('a', 'b', 'c').inc(Infinity)).toThrow(/not a valid number/);
    expect(() => histograms.get2('a', 'b').observe(Infinity)).toThrow(/not a valid number/);
    expect(() => counterChildren(fast.counter).get2('a', 'b')).toThrow(/expected 3 label values/);
  });

  it('go through prom-client only to create a series (the fast path works on this prom-client)', () => {
    const { fast } = pair();
    const inc = vi.spyOn(fast.counter, 'inc');
    const observe = vi.spyOn(fast.histogram, 'observe');
    const counters = counterChildren(fast.counter);
    const histograms = histogramChildren(fast.histogram);
    for (let i = 0; i < 5; i++) {
      counters.get3('a', 'gpt', 'ok').inc();
      histograms.get2('a', 'gpt').observe(0.002);
    }
    expect(inc).toHaveBeenCalledTimes(1);
    expect(observe).toHaveBeenCalledTimes(1);
    // The same child object every time: nothing allocated per lookup.
    expect(counters.get3('a', 'gpt', 'ok')).toBe(counters.get3('a', 'gpt', 'ok'));
  });
});
