import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';

interface MinuteDelta {
  requests: number;
  tokens: number;
  rateLimited: number;
  errors: number;
}

interface TotalDelta {
  requests: number;
  tokens: number;
  lastUsedMs: number;
}

export const USAGE_RETENTION_DAYS = 7;
const RETENTION_EVERY_MS = 3_600_000;

/**
 * Per-key, per-minute usage collected in memory and written to Postgres in one batch every
 * KEY_USAGE_FLUSH_MS (two statements per flush, however many requests) — never a write per request.
 * Instances add their own deltas (ON CONFLICT … + EXCLUDED), so several flush safely.
 */
@Injectable()
export class KeyUsageRecorder implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('KeyUsage');
  private minutes = new Map<string, MinuteDelta>();
  private totals = new Map<string, TotalDelta>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private lastRetention = 0;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** After a successful start only (a failed start leaves no timer behind). */
  onApplicationBootstrap(): void {
    this.timer = setInterval(() => void this.flush(), this.config.keyPool.usageFlushMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }

  record(keyId: string, atMs: number, delta: Partial<MinuteDelta>): void {
    const minute = Math.floor(atMs / 60_000) * 60_000;
    const mk = `${keyId}|${minute}`;
    const m = this.minutes.get(mk) ?? { requests: 0, tokens: 0, rateLimited: 0, errors: 0 };
    m.requests += delta.requests ?? 0;
    m.tokens += delta.tokens ?? 0;
    m.rateLimited += delta.rateLimited ?? 0;
    m.errors += delta.errors ?? 0;
    this.minutes.set(mk, m);
    const t = this.totals.get(keyId) ?? { requests: 0, tokens: 0, lastUsedMs: 0 };
    t.requests += delta.requests ?? 0;
    t.tokens += delta.tokens ?? 0;
    if ((delta.requests ?? 0) > 0) t.lastUsedMs = Math.max(t.lastUsedMs, atMs);
    this.totals.set(keyId, t);
  }

  /** Writes everything collected so far (serialised: concurrent callers wait for the same flush chain). */
  flush(): Promise<void> {
    this.flushing = this.flushing
      .then(() => this.flushNow())
      .catch((err: unknown) => {
        this.logger.error({ err }, 'flushing key usage failed; the batch is dropped');
      });
    return this.flushing;
  }

  private async flushNow(): Promise<void> {
    if (this.minutes.size === 0 && this.totals.size === 0) return this.retention();
    const minutes = this.minutes;
    const totals = this.totals;
    this.minutes = new Map();
    this.totals = new Map();
    if (!this.dataSource.isInitialized) return;

    const keyIds: string[] = [];
    const mins: string[] = [];
    const req: number[] = [];
    const tok: number[] = [];
    const rl: number[] = [];
    const err: number[] = [];
    for (const [mk, d] of minutes) {
      const [keyId, minute] = mk.split('|') as [string, string];
      keyIds.push(keyId);
      mins.push(new Date(Number(minute)).toISOString());
      req.push(d.requests);
      tok.push(d.tokens);
      rl.push(d.rateLimited);
      err.push(d.errors);
    }
    if (keyIds.length > 0) {
      await this.dataSource.query(
        `INSERT INTO key_usage_minutes (key_id, minute, requests, tokens, rate_limited, errors)
         SELECT v.key_id, v.minute, v.requests, v.tokens, v.rate_limited, v.errors
           FROM unnest($1::uuid[], $2::timestamptz[], $3::int[], $4::bigint[], $5::int[], $6::int[])
                AS v(key_id, minute, requests, tokens, rate_limited, errors)
          WHERE EXISTS (SELECT 1 FROM provider_keys k WHERE k.id = v.key_id)
         ON CONFLICT (key_id, minute) DO UPDATE SET
           requests = key_usage_minutes.requests + EXCLUDED.requests,
           tokens = key_usage_minutes.tokens + EXCLUDED.tokens,
           rate_limited = key_usage_minutes.rate_limited + EXCLUDED.rate_limited,
           errors = key_usage_minutes.errors + EXCLUDED.errors`,
        [keyIds, mins, req, tok, rl, err],
      );
    }
    const ids: string[] = [];
    const treq: number[] = [];
    const ttok: number[] = [];
    const last: (string | null)[] = [];
    for (const [id, t] of totals) {
      ids.push(id);
      treq.push(t.requests);
      ttok.push(t.tokens);
      last.push(t.lastUsedMs > 0 ? new Date(t.lastUsedMs).toISOString() : null);
    }
    if (ids.length > 0) {
      await this.dataSource.query(
        `UPDATE provider_keys k SET
           total_requests = k.total_requests + v.requests,
           total_tokens = k.total_tokens + v.tokens,
           last_used_at = GREATEST(k.last_used_at, v.last_used)
          FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::timestamptz[]) AS v(id, requests, tokens, last_used)
         WHERE k.id = v.id`,
        [ids, treq, ttok, last],
      );
    }
    await this.retention();
  }

  private async retention(): Promise<void> {
    const now = Date.now();
    if (now - this.lastRetention < RETENTION_EVERY_MS || !this.dataSource.isInitialized) return;
    this.lastRetention = now;
    await this.dataSource.query(
      `DELETE FROM key_usage_minutes WHERE minute < now() - make_interval(days => $1)`,
      [USAGE_RETENTION_DAYS],
    );
  }
}
