/**
 * Routing's public types: what the Relay, Observability and the CLI see. A route maps the model name
 * a client sends (an alias such as `chat-default`) to targets `(provider, model)` in tiers, with
 * weights inside a tier, a bounded number of attempts and a circuit breaker per target.
 * Services: RoutesService (routes, resolution), BreakerService (breaker per target).
 */

/** Per-target upstream timeouts (ms) overriding the provider's `timeout_ms`; null = the provider's. */
export interface TargetTimeouts {
  /** TCP/TLS connect. */
  connectMs: number | null;
  /** From the request sent to the response headers (a stream's first byte). */
  firstByteMs: number | null;
  /** Whole non-streamed exchange, headers and body. */
  totalMs: number | null;
  /** Whole streamed exchange, first byte to last event. */
  streamTotalMs: number | null;
}

/** The admin's override of a target's breaker (PATCH). `auto`: the breaker decides. */
export type BreakerForce = 'auto' | 'open' | 'closed';

export interface RouteTarget {
  providerId: string;
  /** The model the upstream receives. */
  model: string;
  /** Share of traffic within its tier (integer ≥ 1). */
  weight: number;
  /** 1 = preferred; a higher tier is used only when every lower one can't take the request. */
  tier: number;
  timeouts: TargetTimeouts | null;
  breaker: BreakerForce;
}

export interface RouteDef {
  id: string;
  /** The name clients send (unique across routes). */
  model: string;
  targets: RouteTarget[];
  /** Upper bound on attempts (first try + fallbacks) for one request: 1..10, default 3. */
  maxAttempts: number;
  enabled: boolean;
  /** Store this route's request and response bodies (docs/requests.md "Body capture"); absent: off. */
  captureBodies?: boolean;
  createdAt: Date;
  updatedAt: Date;
}

/** A target's identity for the breaker, logs and the x-floodgate-route-target header. */
export interface TargetRef {
  providerId: string;
  model: string;
}

/** Breaker states as the admin API, dashboard and metrics show them. */
export type BreakerState = 'closed' | 'open' | 'half_open';

/** What the breaker lets a request do with a target right now. */
export type BreakerAdmission =
  /** Closed (or forced closed): send. */
  | 'allow'
  /** Half-open and this request holds the one probe: send, report the outcome. */
  | 'probe'
  /** Open (or forced open, or half-open with the probe out): skip this target. */
  | 'deny';

/** Outcomes the breaker counts. 429s are not failures here (cooldown/retreat handle them). */
export type BreakerOutcome = 'success' | 'failure';

export interface BreakerView {
  providerId: string;
  model: string;
  state: BreakerState;
  forced: BreakerForce;
  consecutiveFailures: number;
  /** Failures / requests in the current window (requests include flushed successes). */
  windowFailures: number;
  windowRequests: number;
  /** When an open breaker lets its probe through (ms since epoch); null unless open. */
  openUntilMs: number | null;
}
