import { Logger } from '@nestjs/common';
import { describe, expect, it } from 'vitest';
import { FloodgateMetrics } from '../metrics/floodgate-metrics.js';
import { classifyStoreFailure, RetryingBatch } from './retrying-batch.js';

const pgError = (code: string, message = 'pg error') => Object.assign(new Error(message), { code });
const refused = () =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
const quiet = new Logger('test');
quiet.log = quiet.warn = quiet.error = () => undefined;

function harness(options: { maxEntries?: number; bad?: (v: number) => boolean } = {}) {
  const stored: [string, number][] = [];
  const calls: number[] = [];
  let down = false;
  const metrics = new FloodgateMetrics({ defaultMetrics: false });
  const batch = new RetryingBatch<number>({
    name: 'test',
    unit: 'entries',
    chunkSize: 8,
    maxEntries: options.maxEntries ?? 1000,
    merge: (a, b) => a + b,
    minRetryMs: 10,
    maxRetryMs: 40,
    logger: quiet,
    metrics,
    write: async (entries) => {
      calls.push(entries.length);
      if (down) throw refused();
      if (entries.some(([, v]) => options.bad?.(v))) throw pgError('22021', 'invalid byte sequence');
      stored.push(...entries);
    },
  });
  return { batch, stored, calls, metrics, setDown: (d: boolean) => (down = d) };
}

describe('classifyStoreFailure', () => {
  it('tells an unreachable store from refused data from anything else', () => {
    expect(classifyStoreFailure(refused())).toBe('unreachable');
    expect(classifyStoreFailure(new Error('Connection terminated unexpectedly'))).toBe('unreachable');
    expect(classifyStoreFailure(pgError('57P01'))).toBe('unreachable');
    expect(classifyStoreFailure({ driverError: pgError('22021') })).toBe('rejected');
    expect(classifyStoreFailure(pgError('23503'))).toBe('rejected');
    expect(classifyStoreFailure(pgError('54000'))).toBe('rejected');
    expect(classifyStoreFailure(pgError('40P01'))).toBe('failed');
    expect(classifyStoreFailure(new Error('something else'))).toBe('failed');
  });
});

describe('RetryingBatch', () => {
  it('keeps a batch while the store is unreachable, merges what arrives meanwhile, writes it all once back', async () => {
    const h = harness();
    for (let i = 0; i < 20; i++) h.batch.add(`k${i % 5}`, 1);
    h.setDown(true);
    await h.batch.flush();
    expect(h.batch.size).toBe(5);
    expect(h.batch.failing).toBe(true);
    h.batch.add('k0', 10);
    h.batch.add('k9', 1);
    h.setDown(false);
    await h.batch.flush();
    expect(h.batch.size).toBe(0);
    expect(new Map(h.stored)).toEqual(
      new Map([
        ['k0', 14],
        ['k1', 4],
        ['k2', 4],
        ['k3', 4],
        ['k4', 4],
        ['k9', 1],
      ]),
    );
    expect(h.batch.dropped).toEqual({ buffer_full: 0, rejected: 0, shutdown: 0 });
  });

  it('backs off after a failure: tick does not retry before the delay', async () => {
    const h = harness();
    h.batch.add('a', 1);
    h.setDown(true);
    await h.batch.flush();
    const before = h.calls.length;
    h.batch.tick();
    await h.batch.flush().then(() => undefined); // explicit flushes are not held back
    expect(h.calls.length).toBe(before + 1);
    h.batch.tick(); // within the backoff: nothing
    await new Promise((r) => setTimeout(r, 0));
    expect(h.calls.length).toBe(before + 1);
  });

  it('bounded: past maxEntries new entries are dropped and counted, existing ones still merge', async () => {
    const h = harness({ maxEntries: 3 });
    h.setDown(true);
    for (const k of ['a', 'b', 'c', 'd', 'e']) h.batch.add(k, 1);
    expect(h.batch.add('a', 5)).toBe(true);
    await h.batch.flush();
    expect(h.batch.size).toBe(3);
    expect(h.batch.dropped.buffer_full).toBe(2);
    expect(await h.metrics.registry.getSingleMetricAsString('floodgate_store_writes_dropped_total')).toMatch(
      /writer="test",reason="buffer_full"} 2/,
    );
    h.setDown(false);
    await h.batch.flush();
    expect(new Map(h.stored)).toEqual(
      new Map([
        ['a', 6],
        ['b', 1],
        ['c', 1],
      ]),
    );
  });

  it('a refused entry is isolated by halves and dropped alone; the rest of its chunk and later chunks are written', async () => {
    const h = harness({ bad: (v) => v === 666 });
    for (let i = 0; i < 20; i++) h.batch.add(`k${i}`, i === 13 ? 666 : 1);
    await h.batch.flush();
    expect(h.stored.map(([k]) => k).sort()).toEqual(
      Array.from({ length: 20 }, (_, i) => `k${i}`)
        .filter((k) => k !== 'k13')
        .sort(),
    );
    expect(h.batch.dropped.rejected).toBe(1);
    expect(h.batch.size).toBe(0);
    expect(h.batch.failing).toBe(false);
  });

  it('close retries within its budget, then counts what is still unwritten as lost', async () => {
    const h = harness();
    h.batch.add('a', 1);
    h.setDown(true);
    setTimeout(() => h.setDown(false), 30);
    await h.batch.close(2000);
    expect(h.stored).toEqual([['a', 1]]);
    h.batch.add('b', 1);
    h.setDown(true);
    await h.batch.close(100);
    expect(h.batch.dropped.shutdown).toBe(1);
    expect(h.batch.size).toBe(0);
  });
});
