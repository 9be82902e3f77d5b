import { Inject, Injectable, Logger } from '@nestjs/common';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { DataSource } from 'typeorm';
import { AdaptiveService } from '../adaptive/adaptive.service.js';
import { KeyPoolService } from '../key-pool/key-pool.service.js';

/**
 * Where /api/admin/status, the dashboard and the scrape-time gauges get provider, key, bucket,
 * retreat and adaptive data. One small method per fact, so each plugs into the owning module's
 * public service as it lands — search for `WIRE:`. Until then a method either reads the table the
 * owning module's migration created (INTERIM, read-only) or answers "not reported" (null), and
 * `wiring()` says which, so the status JSON and the dashboard never present a guess as a number.
 */

export type KeyState = 'active' | 'cooling' | 'disabled' | 'broken' | 'invalid';
export type RetreatState = 'normal' | 'retreat' | 'recover';
export type Wiring = 'wired' | 'interim_database' | 'not_wired';

export interface ProviderInfo {
  id: string;
  name: string;
  enabled: boolean;
  /** Provider-wide requests per minute (the retreat bucket's base rate); null = no provider limit. */
  rpm: number | null;
  burst: number | null;
}

export interface KeyInfo {
  id: string;
  providerId: string;
  label: string;
  state: KeyState;
  cooldownUntil: Date | null;
  maxRpm: number | null;
  /** The admin's setting: null = adaptive (learned), a number = fixed. */
  maxConcurrent: number | null;
}

/** Live counters of one key from the shared store (all instances). */
export interface LiveKeyCounters {
  inFlight: number;
  /** Requests admitted in the last 60 s; null when not tracked for this key. */
  rpmUsed: number | null;
  /** The store's cooldown (may be later than the database's). */
  cooldownUntilMs: number | null;
  /** Adaptive's learned limit (adaptive keys); null when not learned yet. */
  learnedLimit: number | null;
}

export interface TokenBucketView {
  capacity: number;
  tokens: number;
  refill_per_second: number;
}

export interface RetreatView {
  state: RetreatState;
  /** null when the provider has no rpm and is not retreating (no bucket). */
  effective_rpm: number | null;
  base_rpm: number | null;
  upstream_429_rate: number;
  /** When the current state began (ISO-8601), null when unknown. */
  since: string | null;
}

export interface AdjustmentView {
  at: string;
  provider_id: string;
  key_id: string;
  key_label: string | null;
  old_limit: number;
  new_limit: number;
  reason: string;
  in_flight: number | null;
}

export interface SourcesWiring {
  providers: Wiring;
  keys: Wiring;
  live_key_counters: Wiring;
  token_bucket: Wiring;
  retreat: Wiring;
  adaptive_adjustments: Wiring;
}

const UNDEFINED_TABLE = '42P01';

@Injectable()
export class StatusSources {
  private readonly logger = new Logger('StatusSources');
  private missingTableLogged = false;

  constructor(
    private readonly dataSource: DataSource,
    private readonly keyPool: KeyPoolService,
    private readonly adaptive: AdaptiveService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  wiring(): SourcesWiring {
    return {
      providers: 'interim_database',
      keys: 'interim_database',
      live_key_counters: 'wired',
      token_bucket: 'wired',
      retreat: 'wired',
      adaptive_adjustments: 'wired',
    };
  }

  /**
   * Every configured provider, by name.
   * WIRE: KeyPoolService only exposes `routableProviders()` (enabled ones); a public listing that
   * includes disabled providers would replace this.
   * INTERIM: a read-only SELECT on the `providers` table (KeyPool's migration).
   */
  async providers(): Promise<ProviderInfo[]> {
    const rows = await this.select<{
      id: string;
      name: string;
      enabled: boolean;
      rpm: number | null;
      burst: number | null;
    }>(`SELECT id, name, enabled, rpm, burst FROM providers ORDER BY lower(name)`);
    return rows.map((r) => ({ id: r.id, name: r.name, enabled: r.enabled, rpm: r.rpm, burst: r.burst }));
  }

  /**
   * Every upstream key of every provider, state derived exactly as KeyPool's `keyState()` does.
   * WIRE: a public key listing from KeyPool (KeyPoolAdminService.keysOf/keyView are not exported).
   * INTERIM: a read-only SELECT on `provider_keys` (never the ciphertext).
   */
  async keys(): Promise<KeyInfo[]> {
    const rows = await this.select<{
      id: string;
      provider_id: string;
      label: string;
      enabled: boolean;
      broken_at: Date | null;
      invalid_at: Date | null;
      cooldown_until: Date | null;
      max_rpm: number | null;
      max_concurrent: number | null;
    }>(
      `SELECT id, provider_id, label, enabled, broken_at, invalid_at, cooldown_until, max_rpm, max_concurrent
         FROM provider_keys ORDER BY priority, lower(label)`,
    );
    const now = Date.now();
    return rows.map((r) => {
      const cooldownUntil = r.cooldown_until ? new Date(r.cooldown_until) : null;
      return {
        id: r.id,
        providerId: r.provider_id,
        label: r.label,
        state: deriveKeyState(r.enabled, r.broken_at, r.invalid_at, cooldownUntil, now),
        cooldownUntil,
        maxRpm: r.max_rpm,
        maxConcurrent: r.max_concurrent,
      };
    });
  }

  /**
   * In-flight, RPM used and store cooldown of a provider's keys: KeyPoolService.windows (one store
   * round trip, all instances). KeyPool counts admitted requests only for keys with a max_rpm, so
   * rpm_used is null for the others.
   * WIRE: Adaptive's learned limit per key → learnedLimit (null until then).
   */
  async liveKeyCounters(
    providerId: string,
    keys: Pick<KeyInfo, 'id' | 'maxRpm'>[],
  ): Promise<Map<string, LiveKeyCounters> | null> {
    const ids = keys.map((k) => k.id);
    const [windows, learned] = await Promise.all([
      this.keyPool.windows(providerId, ids),
      this.adaptive.learnedLimits(providerId, ids),
    ]);
    const out = new Map<string, LiveKeyCounters>();
    windows.forEach((w, i) => {
      out.set(w.keyId, {
        inFlight: w.inFlight,
        rpmUsed: keys[i]!.maxRpm !== null ? w.requests : null,
        cooldownUntilMs: w.cooldownUntilMs,
        // What is enforced: the learned value, or Adaptive's starting limit until it learns one.
        learnedLimit: learned.get(w.keyId) ?? this.config.adaptive.initialLimit,
      });
    });
    return out;
  }

  /** The provider's shared token bucket (capacity, tokens now, refill rate): Adaptive's retreat bucket. */
  tokenBucket(provider: ProviderInfo): Promise<TokenBucketView | null> {
    return this.adaptive.tokenBucket(provider.id);
  }

  /** The provider's retreat state machine: state, effective/base rpm, upstream 429 rate (shared by all instances). */
  async retreat(provider: ProviderInfo): Promise<RetreatView | null> {
    const r = await this.adaptive.retreatStatus(provider.id);
    return {
      state: r.state,
      effective_rpm: r.effective_rpm,
      base_rpm: r.base_rpm,
      upstream_429_rate: r.upstream_429_rate,
      since: r.since,
    };
  }

  /** The most recent learned-limit adjustments across all keys, newest first. */
  async recentAdjustments(limit: number): Promise<AdjustmentView[] | null> {
    const records = await this.adaptive.recentAdjustments(limit);
    return records.map((r) => ({ ...r, key_label: null }));
  }

  private async select<T>(sql: string): Promise<T[]> {
    try {
      return (await this.dataSource.query(sql)) as T[];
    } catch (err) {
      if ((err as { code?: string }).code === UNDEFINED_TABLE) {
        if (!this.missingTableLogged) {
          this.missingTableLogged = true;
          this.logger.warn(
            'providers tables are missing (KeyPool migration not applied): status shows no providers',
          );
        }
        return [];
      }
      throw err;
    }
  }
}

/** Same precedence as KeyPool's keyState(): disabled → broken → invalid → cooling → active. */
export function deriveKeyState(
  enabled: boolean,
  brokenAt: Date | null,
  invalidAt: Date | null,
  cooldownUntil: Date | null,
  nowMs: number,
): KeyState {
  if (!enabled) return 'disabled';
  if (brokenAt) return 'broken';
  if (invalidAt) return 'invalid';
  if (cooldownUntil && cooldownUntil.getTime() > nowMs) return 'cooling';
  return 'active';
}
