import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { CachedKey } from './credential-cache.js';
import { RetryingBatch } from '../database/retrying-batch.js';
import { FloodgateMetrics } from '../metrics/floodgate-metrics.js';

export const USAGE_FLUSH_INTERVAL_MS = 5_000;
const CHUNK = 1000;

/**
 * `api_keys.last_used_at` and `users.last_seen_at`, batched: the hot path only records an id and a
 * time in memory; every few seconds (and at shutdown) one UPDATE per table writes them all.
 * Never one write per request. The batching is the shared RetryingBatch (latest time per id; kept
 * and retried while Postgres is unreachable, bounded by WRITE_BUFFER_MAX_ENTRIES).
 */
@Injectable()
export class UsageRecorder implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('UsageRecorder');
  private readonly batch: RetryingBatch<number>;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) config: AppConfig,
    metrics: FloodgateMetrics,
  ) {
    this.batch = new RetryingBatch<number>({
      name: 'api_key_usage',
      unit: 'last-used times',
      chunkSize: CHUNK,
      maxEntries: config.database.writeBufferMaxEntries,
      merge: (a, b) => Math.max(a, b),
      write: (entries) => this.write(entries),
      logger: this.logger,
      metrics,
    });
  }

  onModuleInit(): void {
    this.timer = setInterval(() => this.batch.tick(), USAGE_FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  touch(userId: string, apiKeyId: string | null, now = Date.now()): void {
    this.batch.add(`u:${userId}`, now);
    if (apiKeyId) this.batch.add(`k:${apiKeyId}`, now);
  }

  /** touch() for a verified API key: the same two entries, their batch keys built once per cache entry. */
  touchCached(entry: CachedKey, now: number): void {
    const keys = (entry.usageKeys ??= [`u:${entry.userId}`, `k:${entry.keyId}`]);
    this.batch.add(keys[0], now);
    this.batch.add(keys[1], now);
  }

  get pending(): number {
    return this.batch.size;
  }

  flush(): Promise<void> {
    return this.batch.flush();
  }

  /** Both updates are idempotent (only ever move a time forward), so a retry may repeat either. */
  private async write(entries: [string, number][]): Promise<void> {
    const keys = entries.filter(([id]) => id.startsWith('k:'));
    const users = entries.filter(([id]) => id.startsWith('u:'));
    const ids = (list: [string, number][]) => list.map(([id]) => id.slice(2));
    const times = (list: [string, number][]) => list.map(([, t]) => new Date(t).toISOString());
    if (keys.length > 0) {
      await this.dataSource.query(
        `UPDATE api_keys k SET last_used_at = v.t
           FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, t)
          WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.t)`,
        [ids(keys), times(keys)],
      );
    }
    if (users.length > 0) {
      await this.dataSource.query(
        `UPDATE users u SET last_seen_at = v.t
           FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, t)
          WHERE u.id = v.id AND (u.last_seen_at IS NULL OR u.last_seen_at < v.t)`,
        [ids(users), times(users)],
      );
    }
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.batch.close();
  }
}
