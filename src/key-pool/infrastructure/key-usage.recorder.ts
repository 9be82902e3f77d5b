import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
} from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { RetryingBatch } from '../../database/retrying-batch.js';
import { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';

interface MinuteDelta {
  requests: number;
  tokens: number;
  rateLimited: number;
  errors: number;
  /** Latest request time in this minute (ms), 0 when none. */
  lastUsedMs: number;
}

export const USAGE_RETENTION_DAYS = 7;
const RETENTION_EVERY_MS = 3_600_000;
const CHUNK = 1000;

/**
 * The one statement behind a flush: the per-minute rows and the keys' running totals, written
 * together (a data-modifying CTE is one atomic statement), so a retried batch is never half applied.
 * (Postgres always runs a data-modifying CTE to completion.) Keys deleted meanwhile are skipped. Instances add their own deltas (ON CONFLICT … + EXCLUDED).
 */
const WRITE_USAGE_SQL = `WITH v AS (
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::int[], $4::bigint[], $5::int[], $6::int[], $7::timestamptz[])
      AS v(key_id, minute, requests, tokens, rate_limited, errors, last_used)
     WHERE EXISTS (SELECT 1 FROM provider_keys k WHERE k.id = v.key_id)
  ), minutes AS (
    INSERT INTO key_usage_minutes (key_id, minute, requests, tokens, rate_limited, errors)
    SELECT key_id, minute, requests, tokens, rate_limited, errors FROM v
    ON CONFLICT (key_id, minute) DO UPDATE SET
      requests = key_usage_minutes.requests + EXCLUDED.requests,
      tokens = key_usage_minutes.tokens + EXCLUDED.tokens,
      rate_limited = key_usage_minutes.rate_limited + EXCLUDED.rate_limited,
      errors = key_usage_minutes.errors + EXCLUDED.errors
  )
  UPDATE provider_keys k SET
    total_requests = k.total_requests + t.requests,
    total_tokens = k.total_tokens + t.tokens,
    last_used_at = GREATEST(k.last_used_at, t.last_used)
   FROM (SELECT key_id, SUM(requests) AS requests, SUM(tokens) AS tokens, MAX(last_used) AS last_used
           FROM v GROUP BY key_id) t
  WHERE k.id = t.key_id`;

/**
 * Per-key, per-minute usage collected in memory and written to Postgres in one statement every
 * KEY_USAGE_FLUSH_MS — never a write per request. The batching is the shared RetryingBatch: while
 * Postgres is unreachable the deltas stay in memory (merged per key and minute, bounded by
 * WRITE_BUFFER_MAX_ENTRIES) and are written when it answers again, and at shutdown.
 */
@Injectable()
export class KeyUsageRecorder implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('KeyUsage');
  private readonly batch: RetryingBatch<MinuteDelta>;
  private timer: NodeJS.Timeout | undefined;
  private lastRetention = 0;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    metrics: FloodgateMetrics,
  ) {
    this.batch = new RetryingBatch<MinuteDelta>({
      name: 'key_usage',
      unit: 'key usage entries',
      chunkSize: CHUNK,
      maxEntries: config.database.writeBufferMaxEntries,
      merge: (a, b) => ({
        requests: a.requests + b.requests,
        tokens: a.tokens + b.tokens,
        rateLimited: a.rateLimited + b.rateLimited,
        errors: a.errors + b.errors,
        lastUsedMs: Math.max(a.lastUsedMs, b.lastUsedMs),
      }),
      write: (entries) => this.write(entries),
      logger: this.logger,
      metrics,
      describe: (key, d) => `key|minute ${key}: ${d.requests} requests, ${d.tokens} tokens`,
    });
  }

  /** After a successful start only (a failed start leaves no timer behind). */
  onApplicationBootstrap(): void {
    this.timer = setInterval(() => {
      this.batch.tick();
      if (!this.batch.failing) void this.retention();
    }, this.config.keyPool.usageFlushMs);
    this.timer.unref();
  }

  /** Before shutdown hooks: the database pool closes in onApplicationShutdown. */
  async beforeApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.batch.close();
  }

  record(keyId: string, atMs: number, delta: Partial<Omit<MinuteDelta, 'lastUsedMs'>>): void {
    const minute = Math.floor(atMs / 60_000) * 60_000;
    this.batch.add(`${keyId}|${minute}`, {
      requests: delta.requests ?? 0,
      tokens: delta.tokens ?? 0,
      rateLimited: delta.rateLimited ?? 0,
      errors: delta.errors ?? 0,
      lastUsedMs: (delta.requests ?? 0) > 0 ? atMs : 0,
    });
  }

  /** Entries not yet written. */
  get pending(): number {
    return this.batch.size;
  }

  /** Writes everything collected so far (an unreachable Postgres keeps it for the next attempt). */
  flush(): Promise<void> {
    return this.batch.flush();
  }

  private async write(entries: [string, MinuteDelta][]): Promise<void> {
    if (!this.dataSource.isInitialized) throw new Error('Connection terminated: the database is closed');
    const keyIds: string[] = [];
    const mins: string[] = [];
    const req: number[] = [];
    const tok: number[] = [];
    const rl: number[] = [];
    const err: number[] = [];
    const last: (string | null)[] = [];
    for (const [mk, d] of entries) {
      const [keyId, minute] = mk.split('|') as [string, string];
      keyIds.push(keyId);
      mins.push(new Date(Number(minute)).toISOString());
      req.push(d.requests);
      tok.push(d.tokens);
      rl.push(d.rateLimited);
      err.push(d.errors);
      last.push(d.lastUsedMs > 0 ? new Date(d.lastUsedMs).toISOString() : null);
    }
    await this.dataSource.query(WRITE_USAGE_SQL, [keyIds, mins, req, tok, rl, err, last]);
  }

  private async retention(): Promise<void> {
    const now = Date.now();
    if (now - this.lastRetention < RETENTION_EVERY_MS || !this.dataSource.isInitialized) return;
    this.lastRetention = now;
    await this.dataSource
      .query(`DELETE FROM key_usage_minutes WHERE minute < now() - make_interval(days => $1)`, [
        USAGE_RETENTION_DAYS,
      ])
      .catch((err: unknown) => {
        this.lastRetention = Date.now() - RETENTION_EVERY_MS + 60_000; // again in a minute
        this.logger.warn(
          `usage retention failed, retried later: ${err instanceof Error ? err.message : String(err)}`,
        );
      });
  }
}
