import { Inject, Injectable } from '@nestjs/common';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { AdaptiveService } from '../adaptive/services/adaptive.service.js';
import { KeyPoolService } from '../key-pool/services/key-pool.service.js';
import type { BreakerForce, BreakerState } from '../routing/routing.types.js';
import { BreakerService } from '../routing/services/breaker.service.js';
import { RoutesService } from '../routing/services/routes.service.js';

/**
 * Where /api/admin/status, the dashboard and the scrape-time gauges get provider, key, bucket,
 * retreat and adaptive data: one small method per fact, each reading the owning module's public
 * service (KeyPool, Adaptive, Routing) — never their tables. `wiring()` stays in the status JSON so a source
 * that is not reported is said to be so, rather than shown as a number.
 */

export type KeyState = 'active' | 'cooling' | 'disabled' | 'broken' | 'invalid';
export type RetreatState = 'normal' | 'retreat' | 'recover';
export type Wiring = 'wired' | 'not_wired';

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

/** One route target's circuit breaker (docs/breaker.md). */
export interface BreakerStatus {
  /** The route's name (the model clients send) and id. */
  route: string;
  route_id: string;
  provider_id: string;
  /** The provider's name; its id when the provider is gone. */
  provider: string;
  /** The model the upstream receives. */
  model: string;
  /** The breaker's own state (shared by every instance): an open one past its open time shows half_open. */
  state: BreakerState;
  /** The admin's override on the route target (`auto`: the breaker decides). */
  forced: BreakerForce;
  consecutive_failures: number;
  window_failures: number;
  window_requests: number;
  /** When an open breaker lets its probe through (ISO-8601); null unless open or half_open. */
  open_until: string | null;
}

export interface SourcesWiring {
  providers: Wiring;
  keys: Wiring;
  live_key_counters: Wiring;
  token_bucket: Wiring;
  retreat: Wiring;
  adaptive_adjustments: Wiring;
  breakers: Wiring;
}

@Injectable()
export class StatusSources {
  constructor(
    private readonly keyPool: KeyPoolService,
    private readonly adaptive: AdaptiveService,
    private readonly routes: RoutesService,
    private readonly breaker: BreakerService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  wiring(): SourcesWiring {
    return {
      providers: 'wired',
      keys: 'wired',
      live_key_counters: 'wired',
      token_bucket: 'wired',
      retreat: 'wired',
      adaptive_adjustments: 'wired',
      breakers: 'wired',
    };
  }

  /** Every configured provider (enabled or not), by name: KeyPool's public listing. */
  async providers(): Promise<ProviderInfo[]> {
    return this.keyPool.providerSummaries();
  }

  /** Every upstream key with its derived state (KeyPool decides the state; never re-derived here). */
  async keys(): Promise<KeyInfo[]> {
    return (await this.keyPool.keyStates()).map((k) => ({
      id: k.keyId,
      providerId: k.providerId,
      label: k.label,
      state: k.state,
      cooldownUntil: k.cooldownUntil,
      maxRpm: k.maxRpm,
      maxConcurrent: k.maxConcurrent,
    }));
  }

  /**
   * In-flight, RPM used and store cooldown of a provider's keys: KeyPoolService.windows (one store
   * round trip, all instances). KeyPool counts admitted requests only for keys with a max_rpm, so
   * rpm_used is null for the others.
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

  /** The circuit breaker of every target of every route (Routing's shared state: all instances agree). */
  async breakers(providers: ProviderInfo[]): Promise<BreakerStatus[]> {
    const routes = await this.routes.list();
    const rows = routes.flatMap((r) => r.targets.map((t) => ({ route: r, target: t })));
    const views = await this.breaker.views(
      rows.map(({ target: t }) => ({ providerId: t.providerId, model: t.model, forced: t.breaker })),
    );
    const names = new Map(providers.map((p) => [p.id, p.name]));
    return rows.map(({ route, target }, i) => {
      const v = views[i]!;
      return {
        route: route.model,
        route_id: route.id,
        provider_id: target.providerId,
        provider: names.get(target.providerId) ?? target.providerId,
        model: target.model,
        state: v.state,
        forced: v.forced,
        consecutive_failures: v.consecutiveFailures,
        window_failures: v.windowFailures,
        window_requests: v.windowRequests,
        open_until: v.openUntilMs === null ? null : new Date(v.openUntilMs).toISOString(),
      };
    });
  }
}
