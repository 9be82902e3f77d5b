import { describe, expect, it } from 'vitest';
import type { DataSource } from 'typeorm';
import type { AppConfig } from '../config/app-config.js';
import { FloodgateMetrics } from '../metrics/floodgate-metrics.js';
import type { CachedKey } from './credential-cache.js';
import { UsageRecorder } from './usage-recorder.js';

function recorder(): { usage: UsageRecorder; queries: unknown[][] } {
  const queries: unknown[][] = [];
  const dataSource = {
    query: (_sql: string, params: unknown[]) => {
      queries.push(params);
      return Promise.resolve([]);
    },
  } as unknown as DataSource;
  const config = { database: { writeBufferMaxEntries: 1000 } } as unknown as AppConfig;
  return {
    usage: new UsageRecorder(dataSource, config, new FloodgateMetrics({ defaultMetrics: false })),
    queries,
  };
}

const entry = (): CachedKey => ({
  keyId: '00000000-0000-4000-8000-00000000000a',
  userId: '00000000-0000-4000-8000-00000000000b',
  expiresAtMs: null,
  principal: {
    userId: '00000000-0000-4000-8000-00000000000b',
    email: null,
    role: 'user',
    method: 'api_key',
    apiKeyId: '00000000-0000-4000-8000-00000000000a',
    apiKey: { rpm: null, tpm: null, allowedModels: null, maxPriority: 'high' },
  },
});

describe('UsageRecorder.touchCached', () => {
  it('records the key and its owner like touch(), building their batch keys once per entry', async () => {
    const { usage, queries } = recorder();
    const cached = entry();
    usage.touchCached(cached, 1_000);
    const keys = cached.usageKeys;
    expect(keys).toEqual([
      'u:00000000-0000-4000-8000-00000000000b',
      'k:00000000-0000-4000-8000-00000000000a',
    ]);
    usage.touchCached(cached, 3_000);
    usage.touchCached(cached, 2_000);
    expect(cached.usageKeys).toBe(keys);
    // the same two entries touch() makes, merged to the latest time
    usage.touch(cached.userId, cached.keyId, 2_500);
    expect(usage.pending).toBe(2);
    await usage.flush();
    const iso = new Date(3_000).toISOString();
    expect(queries).toEqual([
      [[cached.keyId], [iso]],
      [[cached.userId], [iso]],
    ]);
  });
});
