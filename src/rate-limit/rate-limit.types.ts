import { applyDecorators, SetMetadata } from '@nestjs/common';
import { ApiHeader, ApiTooManyRequestsResponse } from '@nestjs/swagger';
import { ErrorResponseDto } from '../common/error.dto.js';
import type { RateLimitAlgorithm } from '../config/app-config.js';
import type { AtomicScript, ScriptValue } from '../state/atomic-store.js';
import type { LocalDb } from '../state/local-db.js';
import type { ClientEvaluation } from './rate-limit.scripts.js';

/** Public types and the route decorator of the RateLimit module (other modules may import this file). */

export type { RateLimitAlgorithm };

/** A per-route policy, added on top of the key / user / IP policies (all of them must admit). */
export interface RateLimitOptions {
  /** Shown in headers, 429 messages and the admin API; lowercase letters, digits, `_ . -`. */
  name: string;
  /** Requests per window (token bucket: tokens refilled per window). */
  limit: number;
  windowSeconds: number;
  /** Default sliding_window (exact). */
  algorithm?: RateLimitAlgorithm;
  /** Token bucket capacity (default: limit). */
  burst?: number;
  /**
   * Whom the policy counts: `principal` (the API key, else the user, else the IP for an
   * unauthenticated caller) or `ip`. Default principal.
   */
  per?: 'principal' | 'ip';
}

export const RATE_LIMIT_ROUTE = 'floodgate:rate-limit:route';
export const RATE_LIMIT_IN_ADMISSION = 'floodgate:rate-limit:in-admission';

/**
 * The route decides its client limits inside its own atomic admission step (the relay's /v1 POST
 * routes: client limits, provider gates and key selection in one store round trip). The guard then
 * only computes the policies that apply (RateLimitService.defer) and makes no store call; the
 * handler must decide them with RateLimitService.decideWith (or decideDeferred).
 */
export const RateLimitInAdmission = (): MethodDecorator & ClassDecorator =>
  SetMetadata(RATE_LIMIT_IN_ADMISSION, true);

/**
 * The client limits as a step of a larger atomic script. `lua` is a library (client-limits.lua)
 * defining `fg_client_evaluate(K, A, now_ms, now_us[, ko, ao])` → st (`st.stale`, `st.all_ok`) and
 * `fg_client_reply(st, commit)` → the limiter's reply; `evaluate` / `reply` are their twins over
 * LocalDb. K/A are AdmissionScript's KEYS/ARGV (see rate-limit.scripts.ts), read from after their first
 * ko keys / ao args when a larger script passes its own KEYS/ARGV in place.
 */
export interface ClientLimitsStep {
  readonly lua: string;
  evaluate(db: LocalDb, keys: string[], args: string[], nowMs: number): ClientEvaluation;
  reply(db: LocalDb, evaluation: ClientEvaluation, commit: boolean): number[];
}

/**
 * The client key's token charge as a step of a larger atomic script (the key pool's release: the
 * answer path's one script call). `lua` (token-charge.lua plus a wrapper) defines
 * `fg_ride(K, A, ko, ao, now)` and runs nothing by itself; K/A are ChargeTokensScript's KEYS
 * (log, sum) and ARGV (member, tokens, window_ms), read in place after the first ko keys / ao args;
 * `run` is its twin over LocalDb.
 */
export interface TokenChargeStep {
  readonly name: string;
  readonly lua: string;
  run(db: LocalDb, keys: string[], args: string[], nowMs: number): void;
}

/** How a caller runs the client limits inside its own script (RateLimitService.decideWith). */
export interface CombinedRun<T> {
  /** The script to run, given the client step's KEYS/ARGV (built right before sending). */
  build(client: { keys: string[]; args: (string | number)[] }): {
    script: AtomicScript;
    keys: string[];
    args: (string | number)[];
  };
  /** Splits the reply: the client step's own reply, and the rest (null when the client step refused). */
  decode(reply: ScriptValue): { client: ScriptValue; rest: T | null };
}
/**
 * A spend budget's reservation for one request (docs/spend.md "Budgets"), built by the relay from
 * the subject's budget and the request's worst-case cost: the counter of the period `periodId`
 * (the key carries it, so a new period starts a new counter), `resetMs` to the period's end (0:
 * never, `total`).
 */
export interface SpendReservation {
  /** `key:<id>`, `user:<id>` or `team:<id>`. */
  subject: string;
  period: string;
  periodId: string;
  limitMicros: number;
  resetMs: number;
  reserveMicros: number;
  /**
   * How long the reservation lives without being renewed (BUDGET_RESERVATION_TTL_MS): a request
   * whose instance dies gives it back by then (docs/spend.md "Budgets").
   */
  reservationTtlMs: number;
}

export const BUILTIN_POLICY_NAMES = [
  'key',
  'user',
  'ip',
  'tpm',
  'team',
  'team_tpm',
  'key_budget',
  'user_budget',
  'team_budget',
] as const;

const registry = new Map<string, Required<RateLimitOptions>>();

function normalise(o: RateLimitOptions): Required<RateLimitOptions> {
  const problems: string[] = [];
  if (!/^[a-z0-9_.-]{1,40}$/.test(o.name)) problems.push('name must be 1-40 of a-z 0-9 _ . -');
  if ((BUILTIN_POLICY_NAMES as readonly string[]).includes(o.name))
    problems.push(`name "${o.name}" is reserved`);
  if (!Number.isInteger(o.limit) || o.limit < 1) problems.push('limit must be an integer >= 1');
  if (!Number.isInteger(o.windowSeconds) || o.windowSeconds < 1)
    problems.push('windowSeconds must be an integer >= 1');
  const burst = o.burst ?? o.limit;
  if (!Number.isInteger(burst) || burst < 1) problems.push('burst must be an integer >= 1');
  if (problems.length > 0) throw new Error(`@RateLimit(${JSON.stringify(o)}): ${problems.join('; ')}`);
  const full: Required<RateLimitOptions> = {
    name: o.name,
    limit: o.limit,
    windowSeconds: o.windowSeconds,
    algorithm: o.algorithm ?? 'sliding_window',
    burst,
    per: o.per ?? 'principal',
  };
  const existing = registry.get(full.name);
  if (existing && JSON.stringify(existing) !== JSON.stringify(full)) {
    throw new Error(`@RateLimit: policy "${full.name}" is declared twice with different settings`);
  }
  registry.set(full.name, full);
  return full;
}

/**
 * Adds route policies: `@RateLimit({ name: 'chat', limit: 20, windowSeconds: 60 })`. The same name
 * on several routes shares one counter. Documents the 429 in OpenAPI.
 */
export function RateLimit(...options: RateLimitOptions[]): MethodDecorator & ClassDecorator {
  const policies = options.map(normalise);
  return applyDecorators(
    SetMetadata(RATE_LIMIT_ROUTE, policies),
    ApiHeader({
      name: 'X-Forwarded-For',
      required: false,
      description: 'Believed only from TRUSTED_PROXIES',
    }),
    ApiTooManyRequestsResponse({
      description: `Rate limited (${policies.map((p) => p.name).join(', ')} and the key/user/IP policies); see Retry-After`,
      type: ErrorResponseDto,
    }),
  );
}

/** Every route policy declared in this process (the admin API reports and resets them). */
export function declaredRoutePolicies(): Required<RateLimitOptions>[] {
  return [...registry.values()];
}

/** One policy's state, as the admin API and the headers report it. */
export interface PolicyState {
  name: string;
  algorithm: RateLimitAlgorithm;
  /** `requests`, or `tokens` for the TPM budget. */
  unit: 'requests' | 'tokens';
  limit: number;
  /** Token bucket capacity; equals limit for sliding windows. */
  burst: number;
  remaining: number;
  current: number;
  /** ms until `remaining` next grows (0: nothing to wait for). */
  resetMs: number;
  windowSeconds: number;
}

/** Counters for the Observability module (read with RateLimitService.stats()). */
export interface RateLimitStats {
  /** Per policy name: decisions that admitted / refused with that policy involved. */
  decisions: Record<string, { allowed: number; limited: number }>;
  /** Decisions Redis could not make (connection not ready, Redis silent, error replies, stale replies). */
  storeErrors: number;
  /** Requests let through because of RATE_LIMIT_FAILURE_MODE=open. */
  failedOpen: number;
  /** Requests refused with 503 because of RATE_LIMIT_FAILURE_MODE=closed. */
  failedClosed: number;
  /** Decisions answered without asking Redis while its connection was known unavailable. */
  shortCircuited: number;
  /** Requests shed (503) because Redis reached their decision after its deadline (overloaded). */
  shed: number;
  /** Decisions Redis could not make, by cause (not_connected, silent, connection_lost, error_reply, overloaded). */
  unavailableByCause: Record<string, number>;
  tokensCharged: number;
  chargeErrors: number;
  /** Redis Cluster: committed per-subject steps rolled back because a later subject refused or failed. */
  rollbacks: number;
  /** …of which the rollback could not run (the place stays taken until its window expires it). */
  rollbackFailures: number;
  /** Wall time of decisions (store round trip included), as a cumulative histogram. */
  decisionLatency: { count: number; sumMs: number; maxMs: number; buckets: { le: number; count: number }[] };
}
