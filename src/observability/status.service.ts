import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { Counter } from 'prom-client';
import { packageInfo } from '../common/package-info.js';
import { PRIORITIES, PRIORITY_RANK, PRIORITY_RANKS, type Priority } from '../common/principal.js';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { InstanceRegistry } from '../database/instance-registry.js';
import { FloodgateMetrics } from '../metrics/floodgate-metrics.js';
import { PriorityQueue } from '../state/priority-queue.js';
import {
  StatusSources,
  type AdjustmentView,
  type BreakerStatus,
  type KeyInfo,
  type KeyState,
  type LiveKeyCounters,
  type ProviderInfo,
  type RetreatView,
  type SourcesWiring,
  type TokenBucketView,
} from './status-sources.js';

const KEY_STATES: KeyState[] = ['active', 'cooling', 'disabled', 'broken', 'invalid'];
const OUTCOMES = [
  'ok',
  'client_error',
  'rate_limited',
  'queue_full',
  'no_usable_keys',
  'dependency_unavailable',
  'unavailable',
  'upstream_error',
  'upstream_timeout',
  'canceled',
  'error',
] as const;

/** Seconds of per-second throughput kept in memory (the dashboard's line chart). */
export const HISTORY_SECONDS = 300;
const THROUGHPUT_WINDOW_SECONDS = 60;
/** A snapshot is shared by every caller within this time (one computation per tick for all streams). */
const SNAPSHOT_TTL_MS = 500;

export type QueueDepth = Record<Priority, number>;

export interface InstanceView {
  id: string;
  hostname: string;
  pid: number;
  version: string;
  mode: string;
  started_at: string;
  last_seen_at: string;
  self: boolean;
}

export interface KeyStatus {
  id: string;
  label: string;
  state: KeyState;
  cooldown_until: string | null;
  /** Seconds until the cooldown ends (0 when not cooling). */
  cooldown_remaining_seconds: number;
  concurrency_mode: 'adaptive' | 'fixed';
  /** Effective limit: learned (adaptive) or configured (fixed); null when not reported yet. */
  concurrency_limit: number | null;
  in_flight: number | null;
  rpm_used: number | null;
  max_rpm: number | null;
}

export interface ProviderStatus {
  id: string;
  name: string;
  enabled: boolean;
  queue: QueueDepth & { total: number };
  token_bucket: TokenBucketView | null;
  retreat: RetreatView | null;
  keys: KeyStatus[];
  key_states: Record<KeyState, number>;
}

/** One second of traffic (counts in that second, this instance). */
export interface ThroughputSample {
  t: string;
  http: number;
  relayed: number;
  upstream_429: number;
  rate_limited: number;
  http_5xx: number;
}

export interface StatusSnapshot {
  generated_at: string;
  mode: 'embedded' | 'distributed';
  version: string;
  instance_id: string;
  uptime_seconds: number;
  instances: InstanceView[];
  requests: {
    scope: 'instance';
    http_total: number;
    http_by_status_class: Record<'1xx' | '2xx' | '3xx' | '4xx' | '5xx', number>;
    relayed_total: number;
    relayed_by_outcome: Record<(typeof OUTCOMES)[number], number>;
    relayed_by_priority: QueueDepth;
    rate_limited_total: number;
    upstream_429_total: number;
    tokens: { prompt: number; completion: number };
  };
  errors: {
    http_5xx: number;
    upstream_errors: number;
    upstream_timeouts: number;
    queue_full_rejects: number;
    rate_limit_store_errors: number;
  };
  throughput: {
    window_seconds: number;
    http_per_second: number;
    relayed_per_second: number;
    upstream_429_per_second: number;
    rate_limited_per_second: number;
  };
  /** The last full second (the dashboard appends it to its line chart). */
  sample: ThroughputSample | null;
  queue: QueueDepth & { total: number };
  providers: ProviderStatus[];
  adaptive: { recent_adjustments: AdjustmentView[] | null };
  /** The circuit breaker of every route target; null when it could not be read (see problems). */
  breakers: BreakerStatus[] | null;
  sources: SourcesWiring;
  /** Parts that could not be read this time (e.g. the database is down); their numbers are missing, not zero. */
  problems: string[];
  history?: ThroughputSample[];
}

interface Totals {
  tMs: number;
  http: number;
  relayed: number;
  upstream429: number;
  rateLimited: number;
  http5xx: number;
}

/**
 * Builds /api/admin/status: what the gateway is doing right now, the same numbers the metrics show.
 * Shared state (queue depth, providers, keys, in-flight, retreat) is read from the shared stores, so
 * every instance answers the same in distributed mode; request counters are this instance's (its
 * Prometheus counters — sum them across instances in Prometheus), and `instances` lists who is up.
 *
 * Also samples the counters once a second (the dashboard's throughput history) and fills the
 * scrape-time gauges (queue depth, upstream keys by state, …) from the same snapshot.
 */
@Injectable()
export class StatusService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('Status');
  private readonly version = packageInfo().version;
  private readonly ring: Totals[] = [];
  private timer: NodeJS.Timeout | undefined;
  private cached: { at: number; promise: Promise<StatusSnapshot> } | null = null;

  constructor(
    private readonly metrics: FloodgateMetrics,
    private readonly sources: StatusSources,
    private readonly queue: PriorityQueue,
    private readonly dataSource: DataSource,
    private readonly instance: InstanceRegistry,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    metrics.onCollect(() => this.fillGauges());
  }

  onApplicationBootstrap(): void {
    void this.sampleTotals();
    this.timer = setInterval(() => void this.sampleTotals(), 1000);
    this.timer.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.timer);
  }

  /** The current status (shared by every caller for SNAPSHOT_TTL_MS). */
  snapshot(): Promise<StatusSnapshot> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < SNAPSHOT_TTL_MS) return this.cached.promise;
    const promise = this.build();
    this.cached = { at: now, promise };
    promise.catch(() => {
      if (this.cached?.promise === promise) this.cached = null;
    });
    return promise;
  }

  /** Per-second samples of the last `seconds` seconds (oldest first). */
  history(seconds: number): ThroughputSample[] {
    const out: ThroughputSample[] = [];
    const start = Math.max(1, this.ring.length - seconds);
    for (let i = start; i < this.ring.length; i++) out.push(delta(this.ring[i - 1]!, this.ring[i]!));
    return out;
  }

  private async build(): Promise<StatusSnapshot> {
    const problems: string[] = [];
    const guard = async <T>(what: string, fallback: T, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (err) {
        problems.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
        return fallback;
      }
    };

    const [counters, instances, providers, keys, adjustments] = await Promise.all([
      this.readCounters(),
      guard('instances', [] as InstanceView[], () => this.instances()),
      guard('providers', [] as ProviderInfo[], () => this.sources.providers()),
      guard('keys', [] as KeyInfo[], () => this.sources.keys()),
      guard('adaptive adjustments', null as AdjustmentView[] | null, () =>
        this.sources.recentAdjustments(20),
      ),
    ]);

    const now = Date.now();
    const [providerStatuses, breakers] = await Promise.all([
      Promise.all(
        providers.map((p) =>
          this.providerStatus(
            p,
            keys.filter((k) => k.providerId === p.id),
            now,
            guard,
          ),
        ),
      ),
      guard('breakers', null as BreakerStatus[] | null, () => this.sources.breakers(providers)),
    ]);
    const queue = emptyQueue();
    for (const p of providerStatuses) {
      for (const name of PRIORITIES) queue[name] += p.queue[name];
      queue.total += p.queue.total;
    }

    const last =
      this.ring.length >= 2
        ? delta(this.ring[this.ring.length - 2]!, this.ring[this.ring.length - 1]!)
        : null;
    return {
      generated_at: new Date(now).toISOString(),
      mode: this.config.mode,
      version: this.version,
      instance_id: this.instance.id,
      uptime_seconds: Math.floor((now - this.instance.startedAt.getTime()) / 1000),
      instances,
      requests: counters.requests,
      errors: counters.errors,
      throughput: this.throughput(),
      sample: last,
      queue,
      providers: providerStatuses,
      adaptive: { recent_adjustments: adjustments },
      breakers,
      sources: this.sources.wiring(),
      problems,
    };
  }

  private async providerStatus(
    provider: ProviderInfo,
    keys: KeyInfo[],
    now: number,
    guard: <T>(what: string, fallback: T, fn: () => Promise<T>) => Promise<T>,
  ): Promise<ProviderStatus> {
    const [depth, bucket, retreat, live] = await Promise.all([
      guard(`queue of ${provider.name}`, null as Record<number, number> | null, () =>
        this.queue.counts(provider.id, PRIORITY_RANKS),
      ),
      guard(`token bucket of ${provider.name}`, null as TokenBucketView | null, () =>
        this.sources.tokenBucket(provider),
      ),
      guard(`retreat of ${provider.name}`, null as RetreatView | null, () => this.sources.retreat(provider)),
      guard(`live key counters of ${provider.name}`, null as Map<string, LiveKeyCounters> | null, () =>
        this.sources.liveKeyCounters(provider.id, keys),
      ),
    ]);
    const queue = emptyQueue();
    if (depth) {
      for (const name of PRIORITIES) {
        queue[name] = Number(depth[PRIORITY_RANK[name]] ?? 0);
        queue.total += queue[name];
      }
    }
    const keyStates = Object.fromEntries(KEY_STATES.map((s) => [s, 0])) as Record<KeyState, number>;
    const keyStatuses = keys.map((k) => {
      const counters = live?.get(k.id) ?? null;
      const cooldownMs = Math.max(k.cooldownUntil?.getTime() ?? 0, counters?.cooldownUntilMs ?? 0);
      let state = k.state;
      if (state === 'active' && cooldownMs > now) state = 'cooling';
      if (state === 'cooling' && cooldownMs <= now) state = 'active';
      keyStates[state] += 1;
      const adaptive = k.maxConcurrent === null;
      return {
        id: k.id,
        label: k.label,
        state,
        cooldown_until: cooldownMs > now ? new Date(cooldownMs).toISOString() : null,
        cooldown_remaining_seconds: cooldownMs > now ? Math.ceil((cooldownMs - now) / 1000) : 0,
        concurrency_mode: adaptive ? 'adaptive' : 'fixed',
        concurrency_limit: adaptive ? (counters?.learnedLimit ?? null) : k.maxConcurrent,
        in_flight: counters?.inFlight ?? null,
        rpm_used: counters?.rpmUsed ?? null,
        max_rpm: k.maxRpm,
      } satisfies KeyStatus;
    });
    return {
      id: provider.id,
      name: provider.name,
      enabled: provider.enabled,
      queue,
      token_bucket: bucket,
      retreat,
      keys: keyStatuses,
      key_states: keyStates,
    };
  }

  private async instances(): Promise<InstanceView[]> {
    const rows = (await this.dataSource.query(
      `SELECT id, hostname, pid, version, mode, started_at, last_seen_at FROM instances
        WHERE last_seen_at > now() - interval '60 seconds' ORDER BY started_at`,
    )) as {
      id: string;
      hostname: string;
      pid: number;
      version: string;
      mode: string;
      started_at: Date;
      last_seen_at: Date;
    }[];
    return rows.map((r) => ({
      id: r.id,
      hostname: r.hostname,
      pid: Number(r.pid),
      version: r.version,
      mode: r.mode,
      started_at: new Date(r.started_at).toISOString(),
      last_seen_at: new Date(r.last_seen_at).toISOString(),
      self: r.id === this.instance.id,
    }));
  }

  private async readCounters(): Promise<Pick<StatusSnapshot, 'requests' | 'errors'>> {
    const [http, relay, up429, decisions, tokens, storeErrors] = await Promise.all([
      values(this.metrics.httpRequests),
      values(this.metrics.relayRequests),
      values(this.metrics.upstream429),
      values(this.metrics.rateLimitDecisions),
      values(this.metrics.tokens),
      values(this.metrics.rateLimitStoreErrors),
    ]);
    const byClass = { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 };
    let httpTotal = 0;
    for (const v of http) {
      httpTotal += v.value;
      const cls = String(v.labels.status_class) as keyof typeof byClass;
      if (cls in byClass) byClass[cls] += v.value;
    }
    const byOutcome = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<
      (typeof OUTCOMES)[number],
      number
    >;
    const byPriority = emptyQueueNoTotal();
    let relayed = 0;
    for (const v of relay) {
      relayed += v.value;
      const outcome = String(v.labels.outcome) as (typeof OUTCOMES)[number];
      if (outcome in byOutcome) byOutcome[outcome] += v.value;
      const priority = String(v.labels.priority) as Priority;
      if (priority in byPriority) byPriority[priority] += v.value;
    }
    const tokenTotals = { prompt: 0, completion: 0 };
    for (const v of tokens) {
      const kind = String(v.labels.kind) as keyof typeof tokenTotals;
      if (kind in tokenTotals) tokenTotals[kind] += v.value;
    }
    return {
      requests: {
        scope: 'instance',
        http_total: httpTotal,
        http_by_status_class: byClass,
        relayed_total: relayed,
        relayed_by_outcome: byOutcome,
        relayed_by_priority: byPriority,
        rate_limited_total: sum(decisions.filter((v) => v.labels.result === 'limited')),
        upstream_429_total: sum(up429),
        tokens: tokenTotals,
      },
      errors: {
        http_5xx: byClass['5xx'],
        upstream_errors: byOutcome.upstream_error,
        upstream_timeouts: byOutcome.upstream_timeout,
        queue_full_rejects: byOutcome.queue_full,
        rate_limit_store_errors: sum(storeErrors),
      },
    };
  }

  private async sampleTotals(): Promise<void> {
    try {
      const { requests } = await this.readCounters();
      this.ring.push({
        tMs: Date.now(),
        http: requests.http_total,
        relayed: requests.relayed_total,
        upstream429: requests.upstream_429_total,
        rateLimited: requests.rate_limited_total,
        http5xx: requests.http_by_status_class['5xx'],
      });
      if (this.ring.length > HISTORY_SECONDS + 1)
        this.ring.splice(0, this.ring.length - (HISTORY_SECONDS + 1));
    } catch (err) {
      this.logger.warn(
        `could not sample request counters: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }

  private throughput(): StatusSnapshot['throughput'] {
    const last = this.ring[this.ring.length - 1];
    const first = this.ring[Math.max(0, this.ring.length - 1 - THROUGHPUT_WINDOW_SECONDS)];
    const seconds = last && first ? (last.tMs - first.tMs) / 1000 : 0;
    const rate = (a: number, b: number): number => (seconds > 0 ? round2((b - a) / seconds) : 0);
    return {
      window_seconds: THROUGHPUT_WINDOW_SECONDS,
      http_per_second: last && first ? rate(first.http, last.http) : 0,
      relayed_per_second: last && first ? rate(first.relayed, last.relayed) : 0,
      upstream_429_per_second: last && first ? rate(first.upstream429, last.upstream429) : 0,
      rate_limited_per_second: last && first ? rate(first.rateLimited, last.rateLimited) : 0,
    };
  }

  /**
   * Scrape time: the gauges that mirror shared state, from the same snapshot the status shows.
   * Each family is rewritten only when this module is its source (so a feature that sets one of
   * them itself is never overwritten with "not reported").
   */
  private async fillGauges(): Promise<void> {
    const s = await this.snapshot();
    const m = this.metrics;
    m.queueDepth.reset();
    for (const p of s.providers)
      for (const name of PRIORITIES) m.queueDepth.labels(p.name, name).set(p.queue[name]);
    if (s.sources.keys !== 'not_wired') {
      m.upstreamKeys.reset();
      for (const p of s.providers)
        for (const state of KEY_STATES) m.upstreamKeys.labels(p.name, state).set(p.key_states[state]);
    }
    // Per-key limits / in-flight and the retreat gauges are Adaptive's (its own scrape collector
    // writes them from the same shared store); two writers of one family would race.
  }
}

type CounterValues = { labels: Record<string, string | number>; value: number }[];

async function values(counter: Counter<string>): Promise<CounterValues> {
  return (await counter.get()).values as CounterValues;
}

function sum(values: CounterValues): number {
  let total = 0;
  for (const v of values) total += v.value;
  return total;
}

function delta(a: Totals, b: Totals): ThroughputSample {
  return {
    t: new Date(b.tMs).toISOString(),
    http: b.http - a.http,
    relayed: b.relayed - a.relayed,
    upstream_429: b.upstream429 - a.upstream429,
    rate_limited: b.rateLimited - a.rateLimited,
    http_5xx: b.http5xx - a.http5xx,
  };
}

function emptyQueueNoTotal(): QueueDepth {
  return { urgent: 0, high: 0, normal: 0, low: 0 };
}

function emptyQueue(): QueueDepth & { total: number } {
  return { urgent: 0, high: 0, normal: 0, low: 0, total: 0 };
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
