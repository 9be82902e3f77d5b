import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { counterChildren, histogramChildren } from './fast-children.js';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const OVERHEAD_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];
/** The `event` values of floodgate_admission_grant_events_total (each series exists from the start, at 0). */
export const ADMISSION_GRANT_EVENTS = [
  'block',
  'local_admission',
  'flushed_release',
  'give_back',
  'drop',
] as const;
export type AdmissionGrantEvent = (typeof ADMISSION_GRANT_EVENTS)[number];
const QUEUE_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Every Floodgate metric, on one registry per application (so several apps in one test process
 * don't collide). Features record into these instruments; label values are bounded by design:
 * route templates (never raw paths), provider names, upstream key ids, priorities, outcomes —
 * never user ids, client key ids or key values.
 *
 * Gauges that mirror shared state (queue depth, key states, learned limits, retreat) are filled at
 * scrape time by collectors registered with `onCollect`, so the hot path never touches them.
 */
export class FloodgateMetrics {
  readonly registry = new Registry();
  private readonly collectors: (() => Promise<void> | void)[] = [];

  readonly httpRequests = new Counter({
    name: 'floodgate_http_requests_total',
    help: 'HTTP requests answered, by route template and status class',
    labelNames: ['method', 'route', 'status_class'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'floodgate_http_request_duration_seconds',
    help: 'HTTP request duration, by route template and status class',
    labelNames: ['method', 'route', 'status_class'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly relayRequests = new Counter({
    name: 'floodgate_relay_requests_total',
    help: 'Relayed requests by provider, model, priority and outcome (ok, client_error, rate_limited, queue_full, no_usable_keys, dependency_unavailable, unavailable, upstream_error, upstream_timeout, canceled, error)',
    labelNames: ['provider', 'model', 'priority', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly upstreamLatency = new Histogram({
    name: 'floodgate_upstream_latency_seconds',
    help: 'Upstream call duration (whole response), by provider and model',
    labelNames: ['provider', 'model'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly upstreamTtft = new Histogram({
    name: 'floodgate_upstream_ttft_seconds',
    help: 'Upstream time to first byte of a streamed response, by provider and model',
    labelNames: ['provider', 'model'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: 'floodgate_queue_wait_seconds',
    help: 'Time requests waited for admission, by provider and priority (0 on the uncontended path)',
    labelNames: ['provider', 'priority'] as const,
    buckets: QUEUE_BUCKETS,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'floodgate_queue_depth',
    help: 'Requests waiting for admission, by provider and priority (shared across instances in distributed mode)',
    labelNames: ['provider', 'priority'] as const,
    registers: [this.registry],
  });
  readonly tokens = new Counter({
    name: 'floodgate_tokens_total',
    help: 'Tokens relayed, by provider, model and kind (prompt, completion)',
    labelNames: ['provider', 'model', 'kind'] as const,
    registers: [this.registry],
  });
  readonly overhead = new Histogram({
    name: 'floodgate_gateway_overhead_seconds',
    help: 'Time spent in the gateway per relayed request, upstream and queue excluded',
    labelNames: ['endpoint'] as const,
    buckets: OVERHEAD_BUCKETS,
    registers: [this.registry],
  });
  readonly upstreamKeys = new Gauge({
    name: 'floodgate_upstream_keys',
    help: 'Upstream keys by provider and state (active, cooling, disabled, broken, invalid)',
    labelNames: ['provider', 'state'] as const,
    registers: [this.registry],
  });
  readonly upstream429 = new Counter({
    name: 'floodgate_upstream_429_total',
    help: 'Upstream 429 answers by provider, upstream key id and type (concurrency, rpm, tpm, unknown)',
    labelNames: ['provider', 'key_id', 'type'] as const,
    registers: [this.registry],
  });
  readonly keyLimit = new Gauge({
    name: 'floodgate_upstream_key_concurrency_limit',
    help: 'Effective concurrency limit per upstream key (learned in adaptive mode, configured in fixed mode)',
    labelNames: ['provider', 'key_id', 'mode'] as const,
    registers: [this.registry],
  });
  readonly keyInFlight = new Gauge({
    name: 'floodgate_upstream_key_in_flight',
    help: 'Requests in flight per upstream key (all instances)',
    labelNames: ['provider', 'key_id'] as const,
    registers: [this.registry],
  });
  readonly adaptiveAdjustments = new Counter({
    name: 'floodgate_adaptive_adjustments_total',
    help: 'Learned-limit adjustments by provider, upstream key id and direction (increase, decrease)',
    labelNames: ['provider', 'key_id', 'direction'] as const,
    registers: [this.registry],
  });
  readonly retreatState = new Gauge({
    name: 'floodgate_retreat_state',
    help: 'Retreat state per provider: 0 normal, 1 retreat, 2 recover',
    labelNames: ['provider'] as const,
    registers: [this.registry],
  });
  readonly retreatEffectiveRpm = new Gauge({
    name: 'floodgate_retreat_effective_rpm',
    help: 'Effective provider-wide requests per minute after retreat',
    labelNames: ['provider'] as const,
    registers: [this.registry],
  });
  readonly upstream429Rate = new Gauge({
    name: 'floodgate_upstream_429_rate',
    help: 'Share of upstream answers that were 429 in the retreat window, per provider',
    labelNames: ['provider'] as const,
    registers: [this.registry],
  });
  readonly breakerState = new Gauge({
    name: 'floodgate_breaker_state',
    help: 'Circuit breaker per route target (provider name, upstream model): 0 closed, 1 half_open, 2 open (its own state; an admin force is in /api/admin/status)',
    labelNames: ['provider', 'model'] as const,
    registers: [this.registry],
  });
  readonly breakerTransitions = new Counter({
    name: 'floodgate_breaker_transitions_total',
    help: 'Circuit breaker transitions per route target, counted by the instance that made them (to: open, half_open, closed)',
    labelNames: ['provider', 'model', 'to'] as const,
    registers: [this.registry],
  });
  readonly rateLimitDecisions = new Counter({
    name: 'floodgate_rate_limit_decisions_total',
    help: 'Client rate-limit decisions by policy and result (allowed, limited)',
    labelNames: ['policy', 'result'] as const,
    registers: [this.registry],
  });
  readonly rateLimitStoreErrors = new Counter({
    name: 'floodgate_rate_limit_store_errors_total',
    help: 'Rate-limit decisions the store could not answer (decided by RATE_LIMIT_FAILURE_MODE)',
    labelNames: ['failure_mode'] as const,
    registers: [this.registry],
  });
  readonly rateLimitUnavailable = new Counter({
    name: 'floodgate_rate_limit_store_unavailable_total',
    help:
      'Rate-limit decisions Redis could not make, by cause: not_connected, silent, connection_lost, ' +
      'error_reply (answered by RATE_LIMIT_FAILURE_MODE) or overloaded (shed with 503)',
    labelNames: ['failure_mode', 'cause'] as const,
    registers: [this.registry],
  });
  readonly rateLimitDecisionSeconds = new Histogram({
    name: 'floodgate_rate_limit_decision_seconds',
    help: 'Wall time of rate-limit decisions (store round trip and event-loop wait included)',
    labelNames: ['result'] as const,
    buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
    registers: [this.registry],
  });

  readonly leasesReleasedLate = new Counter({
    name: 'floodgate_upstream_key_leases_released_late_total',
    help: 'Upstream-key leases released only once the store answered again (their acquisition answer was lost or their release failed during a store outage)',
    labelNames: ['provider'] as const,
    registers: [this.registry],
  });

  readonly storeWritesDropped = new Counter({
    name: 'floodgate_store_writes_dropped_total',
    help: 'Entries a batched Postgres writer gave up on, by writer (request_log, key_usage, api_key_usage) and reason (buffer_full: its in-memory bound was hit while Postgres could not be written; rejected: Postgres refused that one entry; shutdown: still unwritten when the process stopped)',
    labelNames: ['writer', 'reason'] as const,
    registers: [this.registry],
  });
  readonly storeWriteBuffer = new Gauge({
    name: 'floodgate_store_write_buffer_entries',
    help: 'Entries a batched Postgres writer holds in memory, not yet written, by writer',
    labelNames: ['writer'] as const,
    registers: [this.registry],
  });
  readonly staleCredentials = new Counter({
    name: 'floodgate_auth_stale_credentials_total',
    help: 'Requests authenticated from a cached credential past its cache TTL because Postgres was unreachable (bounded by CREDENTIAL_MAX_STALENESS_MS), by method (api_key, jwt)',
    labelNames: ['method'] as const,
    registers: [this.registry],
  });

  // ---- local admission grants (ADMISSION_GRANTS=on; docs/scaling.md) ------------------------
  /**
   * Filled at scrape time from AdmissionGrants' plain counters (the local-admission path touches
   * no prom-client). The families and every `event` series exist at 0 whether grants are on or not.
   */
  readonly admissionGrantEvents = new Counter({
    name: 'floodgate_admission_grant_events_total',
    help:
      'Local admission grants (ADMISSION_GRANTS=on), by event: block (an admission reserved a block of units), ' +
      'local_admission (a request admitted from a grant, without Redis), flushed_release (a unit release sent with ' +
      "its grant's flush), give_back (a grant returned to Redis), drop (a provider's grants dropped: 429, cooldown, " +
      'invalidation, contention, key change)',
    labelNames: ['event'] as const,
    registers: [this.registry],
  });
  readonly admissionGrantReturnedUnits = new Counter({
    name: 'floodgate_admission_grant_returned_units_total',
    help: 'Reserved units of local admission grants given back to Redis unused',
    registers: [this.registry],
  });
  readonly admissionGrantUnitsHeld = new Gauge({
    name: 'floodgate_admission_grant_units_held',
    help: 'Units this instance holds reserved in Redis in live local admission grants and has not handed out yet',
    registers: [this.registry],
  });
  // ---- end local admission grants --------------------------------------------------------------

  // ---- routes (issue 15, relay side) --------------------------------------------------------
  /**
   * A routed request moved past a target: at admission (`breaker_open`, `no_capacity`) or after an
   * attempt failed (`rate_limited`, `upstream_error`, `timeout`, `connect_error`). Labels bounded by
   * the routes an admin defined and these six reasons.
   */
  readonly routeFallbacks = new Counter({
    name: 'floodgate_route_fallbacks_total',
    help: 'Routed requests moved past a target (to the next of their plan), by route alias and reason',
    labelNames: ['route', 'reason'] as const,
    registers: [this.registry],
  });
  // ---- end routes (relay side) ---------------------------------------------------------------

  /**
   * Label children of the metrics every relayed request records, cached per label values and
   * updating prom-client's series in place (src/metrics/fast-children.ts): no label object, label
   * validation or series-hash string per sample.
   */
  readonly hot = {
    httpRequests: counterChildren(this.httpRequests),
    httpDuration: histogramChildren(this.httpDuration),
    relayRequests: counterChildren(this.relayRequests),
    upstreamLatency: histogramChildren(this.upstreamLatency),
    upstreamTtft: histogramChildren(this.upstreamTtft),
    queueWait: histogramChildren(this.queueWait),
    tokens: counterChildren(this.tokens),
    overhead: histogramChildren(this.overhead),
    rateLimitDecisionSeconds: histogramChildren(this.rateLimitDecisionSeconds),
  };

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: '' });
    for (const event of ADMISSION_GRANT_EVENTS) this.admissionGrantEvents.labels(event).inc(0);
  }

  /** Registers a scrape-time collector that refreshes gauges mirroring shared state. */
  onCollect(collector: () => Promise<void> | void): void {
    this.collectors.push(collector);
  }

  /** Prometheus text exposition, after running every collector (a failing collector never breaks the scrape). */
  async render(): Promise<string> {
    await Promise.all(
      this.collectors.map(async (c) => {
        try {
          await c();
        } catch {
          // a collector's source is down: its gauges keep their last values
        }
      }),
    );
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
