import type { Counter, Histogram } from 'prom-client';

/**
 * Label children for the per-request hot path that cost a property lookup and an addition.
 *
 * prom-client's own children (`metric.labels(a, b)`) rebuild the label object, re-validate the
 * labels and rebuild the series' hash string (`name:value,` per label) on every `inc`/`observe`:
 * with the ~8 samples a relayed request records that was ~10 µs of CPU per request. A fast child
 * computes the hash once and updates prom-client's own series entry in place — the same entry
 * `inc`/`observe` would update, so scrapes, `reset()`, `remove()` and aggregation see exactly what
 * they would have. Whenever the entry is missing (first use, after a reset or remove) or the value
 * is one prom-client would refuse, the call goes through prom-client's public method, which
 * creates the entry (or throws the same error).
 *
 * Relies on prom-client 15's series layout (`hashMap`, `sortedLabelNames`, `upperBounds`,
 * `bucketValues`); src/metrics/fast-children.spec.ts fails if an upgrade changes it.
 */
export interface FastCounter {
  inc(value?: number): void;
}
export interface FastHistogram {
  observe(value: number): void;
}

interface SeriesInternals<E> {
  hashMap: Record<string, E | undefined>;
  sortedLabelNames: readonly string[];
  labelNames: readonly string[];
}
interface CounterEntry {
  value: number;
}
interface HistogramEntry {
  sum: number;
  count: number;
  bucketValues: Record<string, number>;
}

/** prom-client's series key: `name:value,` for each label, in sorted label-name order. */
function seriesHash(internals: SeriesInternals<unknown>, labels: Record<string, string>): string {
  let hash = '';
  for (const name of internals.sortedLabelNames) {
    const value = labels[name];
    if (value !== undefined) hash += `${name}:${value},`;
  }
  return hash;
}

function labelObject(internals: SeriesInternals<unknown>, values: readonly string[]): Record<string, string> {
  const names = internals.labelNames;
  if (names.length !== values.length)
    throw new Error(`expected ${names.length} label values (${names.join(', ')}), got ${values.length}`);
  const labels: Record<string, string> = {};
  for (let i = 0; i < names.length; i++) labels[names[i]!] = values[i]!;
  return labels;
}

export function fastCounter(metric: Counter<string>, values: readonly string[]): FastCounter {
  const internals = metric as unknown as SeriesInternals<CounterEntry>;
  const labels = labelObject(internals, values);
  const hash = seriesHash(internals, labels);
  return {
    inc(value = 1) {
      const entry = internals.hashMap[hash];
      if (entry !== undefined && value >= 0 && Number.isFinite(value)) entry.value += value;
      else metric.inc(labels, value);
    },
  };
}

export function fastHistogram(metric: Histogram<string>, values: readonly string[]): FastHistogram {
  const internals = metric as unknown as SeriesInternals<HistogramEntry> & { upperBounds: readonly number[] };
  const labels = labelObject(internals, values);
  const hash = seriesHash(internals, labels);
  const bounds = internals.upperBounds;
  // The bucket's property name, as prom-client keys `bucketValues` (String(bound)): converting the
  // number on every sample is most of what a sample would cost.
  const keys = bounds.map(String);
  return {
    observe(value: number) {
      const entry = internals.hashMap[hash];
      if (entry === undefined || !Number.isFinite(value)) {
        metric.observe(labels, value);
        return;
      }
      entry.sum += value;
      entry.count += 1;
      for (let i = 0; i < bounds.length; i++) {
        if (value <= bounds[i]!) {
          entry.bucketValues[keys[i]!]! += 1;
          return;
        }
      }
    },
  };
}

/**
 * Fast children of one metric, created on first use per combination of label values and kept
 * (label values on the hot path are bounded by design: providers, model routes, priorities,
 * outcomes, endpoints). Looked up by nested maps, so a lookup allocates nothing.
 */
export class ChildCache<C> {
  private readonly root = new Map<string, unknown>();

  constructor(private readonly make: (values: readonly string[]) => C) {}

  get1(a: string): C {
    let c = this.root.get(a) as C | undefined;
    if (c === undefined) this.root.set(a, (c = this.make([a])));
    return c;
  }

  get2(a: string, b: string): C {
    const m = this.level(this.root, a);
    let c = m.get(b) as C | undefined;
    if (c === undefined) m.set(b, (c = this.make([a, b])));
    return c;
  }

  get3(a: string, b: string, c3: string): C {
    const m = this.level(this.level(this.root, a), b);
    let c = m.get(c3) as C | undefined;
    if (c === undefined) m.set(c3, (c = this.make([a, b, c3])));
    return c;
  }

  get4(a: string, b: string, c3: string, d: string): C {
    const m = this.level(this.level(this.level(this.root, a), b), c3);
    let c = m.get(d) as C | undefined;
    if (c === undefined) m.set(d, (c = this.make([a, b, c3, d])));
    return c;
  }

  private level(m: Map<string, unknown>, key: string): Map<string, unknown> {
    let next = m.get(key) as Map<string, unknown> | undefined;
    if (next === undefined) m.set(key, (next = new Map()));
    return next;
  }
}

export function counterChildren(metric: Counter<string>): ChildCache<FastCounter> {
  return new ChildCache((values) => fastCounter(metric, values));
}

export function histogramChildren(metric: Histogram<string>): ChildCache<FastHistogram> {
  return new ChildCache((values) => fastHistogram(metric, values));
}
