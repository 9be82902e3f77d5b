import { HttpStatus, Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { randomBytes } from 'node:crypto';
import { ApiError } from '../common/api-error.js';
import type { Principal } from '../common/principal.js';
import type { AppConfig, RateLimitConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { AtomicStore } from '../state/atomic-store.js';
import { ClientIpService } from './client-ip.service.js';
import { rateLimitHeaders, retryAfterSeconds, seconds, tightest, type PolicyOutcome } from './headers.js';
import {
  applicablePolicies,
  budgetKeys,
  MINUTE_MS,
  parseSubject,
  subjectKeys,
  subjectPolicies,
  type Policy,
  type PolicyOverrides,
  type Subject,
} from './policies.js';
import {
  ADMITTED,
  AdmissionScript,
  ChargeTokensScript,
  RESULTS_PER_POLICY,
  ResetScript,
  STALE,
} from './rate-limit.scripts.js';
import {
  declaredRoutePolicies,
  type PolicyState,
  type RateLimitOptions,
  type RateLimitStats,
} from './rate-limit.types.js';

/** The limiter's own AtomicStore: Redis through a fail-fast connection (~100 ms), or the in-process one. */
export const RATE_LIMIT_STORE = Symbol('RATE_LIMIT_STORE');

/** After this many consecutive store failures, decisions stop asking Redis for CIRCUIT_OPEN_MS. */
const CIRCUIT_FAILURES = 3;
const CIRCUIT_OPEN_MS = 1000;
const WARN_EVERY_MS = 10_000;
const STARTUP_WAIT_MS = 2000;
/** The script refuses to act after this share of the decision timeout (see `deadline`). */
const DEADLINE_SHARE = 0.8;
/** Upper bounds (ms) of the decision latency histogram buckets; one more bucket for the rest. */
export const LATENCY_BOUNDS_MS = [1, 2, 5, 10, 25, 50, 100, 200, 500, 1000];

export type DecisionResult =
  { kind: 'admitted' | 'limited'; outcomes: PolicyOutcome[] } | { kind: 'unavailable'; reason: string };

/** What the guard (or the auth-failure hook) does with a request. */
export interface Verdict {
  headers: Record<string, string>;
  /** Set when the request must be refused (429, or 503 with RATE_LIMIT_FAILURE_MODE=closed). */
  error: ApiError | null;
  decision: DecisionResult;
}

export interface RequestLimits {
  routes?: readonly Required<RateLimitOptions>[];
  overrides?: PolicyOverrides;
  skip?: ReadonlySet<string>;
}

export interface SubjectReport {
  subject: string;
  policies: PolicyState[];
}

/** Finds an API key's own limits for the admin API (the auth module's ApiKeysService, wired in the module). */
export abstract class KeyLimitsLookup {
  abstract find(apiKeyId: string): Promise<{ rpm: number | null; tpm: number | null } | null>;
}

/**
 * The rate limiter. Every decision is ONE AtomicStore run of AdmissionScript over every applicable
 * policy (all-or-nothing). Redis trouble never waits longer than RATE_LIMIT_TIMEOUT_MS and is
 * answered by RATE_LIMIT_FAILURE_MODE. Other modules call `chargeTokens` (Relay, after each
 * response) and `stats` (Observability).
 */
@Injectable()
export class RateLimitService implements OnModuleInit {
  private readonly logger = new Logger('RateLimit');
  private readonly config: RateLimitConfig;
  private readonly decided = new WeakSet<object>();
  private readonly instance = randomBytes(6).toString('base64url');
  private sequence = 0;

  // Redis clock: offset of Redis TIME from this process's clock, learnt from every reply.
  private clockOffsetMs = 0;
  private clockKnown = false;

  // Circuit: consecutive failures and, once open, when to ask Redis again.
  private consecutiveFailures = 0;
  private circuitOpenUntil = 0;

  // Rate-limited warnings: one line per WARN_EVERY_MS with the count since the last one.
  private lastWarnAt = 0;
  private failuresSinceWarn = 0;

  private readonly counters = {
    decisions: new Map<string, { allowed: number; limited: number }>(),
    storeErrors: 0,
    failedOpen: 0,
    failedClosed: 0,
    shortCircuited: 0,
    tokensCharged: 0,
    chargeErrors: 0,
    latency: {
      count: 0,
      sumMs: 0,
      maxMs: 0,
      buckets: new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0),
    },
  };

  constructor(
    @Inject(APP_CONFIG) appConfig: AppConfig,
    @Inject(RATE_LIMIT_STORE) private readonly store: AtomicStore,
    private readonly clientIps: ClientIpService,
    private readonly keyLimits: KeyLimitsLookup,
  ) {
    this.config = appConfig.rateLimit;
  }

  get failureMode(): 'open' | 'closed' {
    return this.config.failureMode;
  }

  /**
   * Distributed: wait (up to 2 s) until the limiter's connection answers, so the first requests are
   * decided by Redis rather than by the failure mode, and learn the Redis clock. A Redis that is
   * down at start-up does not block start-up: decisions follow the failure mode until it is back.
   */
  async onModuleInit(): Promise<void> {
    if (this.store.kind !== 'redis') return;
    const until = Date.now() + STARTUP_WAIT_MS;
    for (;;) {
      try {
        await this.run([], true);
        return;
      } catch {
        if (Date.now() >= until) {
          this.logger.warn(
            `rate limiter store not answering at start-up: failing ${this.config.failureMode} until it does`,
          );
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  /** The client address of a request (X-Forwarded-For only through TRUSTED_PROXIES). */
  clientIp(request: FastifyRequest): string {
    return this.clientIps.resolve(request);
  }

  /** True once the guard (or the hook) has decided this request: nothing may count it again. */
  isDecided(request: object): boolean {
    return this.decided.has(request);
  }

  /**
   * Decides a request against every policy that applies to it; one store round trip.
   * `alreadyRefused`: the request is being answered 401/403 anyway (auth-failure hook), so an
   * unavailable store adds nothing (no fail-open/closed outcome to apply or count).
   */
  async evaluate(
    request: FastifyRequest,
    limits: RequestLimits = {},
    alreadyRefused = false,
  ): Promise<Verdict> {
    this.decided.add(request);
    const policies = applicablePolicies({
      config: this.config,
      principal: request.principal,
      clientIp: this.clientIp(request),
      routes: limits.routes,
      overrides: limits.overrides,
      skip: limits.skip,
    });
    const decision = await this.decide(policies);
    if (alreadyRefused && decision.kind === 'unavailable') return { headers: {}, error: null, decision };
    return this.verdict(decision);
  }

  private verdict(decision: DecisionResult): Verdict {
    if (decision.kind === 'unavailable') {
      if (this.config.failureMode === 'open') {
        this.counters.failedOpen++;
        return { headers: {}, error: null, decision };
      }
      this.counters.failedClosed++;
      return {
        headers: { 'retry-after': String(Math.ceil(CIRCUIT_OPEN_MS / 1000)) },
        error: ApiError.serviceUnavailable(
          'The rate limiter cannot reach its store, and RATE_LIMIT_FAILURE_MODE is closed; retry shortly',
          Math.ceil(CIRCUIT_OPEN_MS / 1000),
          'rate_limiter_unavailable',
        ),
        decision,
      };
    }
    const refused = decision.kind === 'limited';
    const headers = rateLimitHeaders(decision.outcomes, refused);
    if (!refused) return { headers, error: null, decision };
    const top = tightest(decision.outcomes)!;
    const wait = retryAfterSeconds(decision.outcomes);
    const p = top.policy;
    const what =
      p.unit === 'tokens'
        ? `${p.limit} tokens per ${seconds(p.windowMs)} s`
        : p.algorithm === 'token_bucket'
          ? `${p.limit} requests per ${seconds(p.windowMs)} s, burst ${p.burst}`
          : `${p.limit} requests per ${seconds(p.windowMs)} s`;
    const error = new ApiError(
      HttpStatus.TOO_MANY_REQUESTS,
      'rate_limit_error',
      'rate_limit_exceeded',
      `Rate limit exceeded for policy "${p.name}" (${what}); retry in ${wait} s`,
      p.name,
      headers,
    );
    return { headers, error, decision };
  }

  /**
   * Evaluates `policies` atomically; admits (consuming one request in each) only if all admit.
   * Never throws: a store that cannot answer in time gives `unavailable`.
   */
  async decide(policies: readonly Policy[]): Promise<DecisionResult> {
    if (policies.length === 0) return { kind: 'admitted', outcomes: [] };
    const started = performance.now();
    try {
      return await this.decideNow(policies);
    } finally {
      this.observeLatency(performance.now() - started);
    }
  }

  private observeLatency(ms: number): void {
    const h = this.counters.latency;
    h.count++;
    h.sumMs += ms;
    if (ms > h.maxMs) h.maxMs = ms;
    const i = LATENCY_BOUNDS_MS.findIndex((b) => ms <= b);
    h.buckets[i === -1 ? LATENCY_BOUNDS_MS.length : i]!++;
  }

  private async decideNow(policies: readonly Policy[]): Promise<DecisionResult> {
    if (Date.now() < this.circuitOpenUntil) {
      this.counters.shortCircuited++;
      this.noteFailure('circuit open after repeated store failures', false);
      return { kind: 'unavailable', reason: 'circuit open' };
    }
    let reply: number[];
    try {
      reply = await this.run(policies, false);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      this.noteFailure(reason, true);
      return { kind: 'unavailable', reason };
    }
    this.consecutiveFailures = 0;
    const outcomes = this.outcomes(policies, reply);
    const admitted = reply[0] === ADMITTED;
    for (const o of outcomes) {
      const c = this.policyCounter(o.policy.name);
      if (admitted) c.allowed++;
      else if (!o.admitted) c.limited++;
    }
    return { kind: admitted ? 'admitted' : 'limited', outcomes };
  }

  /** One AdmissionScript run; throws on store errors and on a stale (past-deadline) reply. */
  private async run(policies: readonly Policy[], dryRun: boolean): Promise<number[]> {
    const keys: string[] = [];
    const args: (string | number)[] = [this.member(), this.deadline(), dryRun ? 1 : 0, policies.length];
    for (const p of policies) {
      keys.push(...p.keys);
      args.push(p.kind, p.limit, p.windowMs, p.burst, dryRun ? 0 : p.cost);
    }
    const sentAt = Date.now();
    const reply = await this.withDecisionTimeout(this.store.run(AdmissionScript, keys, args));
    const receivedAt = Date.now();
    if (this.store.kind === 'redis' && Array.isArray(reply) && typeof reply[1] === 'number') {
      this.clockOffsetMs = reply[1] - (sentAt + receivedAt) / 2;
      this.clockKnown = true;
    }
    if (reply[0] === STALE) throw new Error('store answered after the decision deadline');
    if (reply.length !== 2 + policies.length * RESULTS_PER_POLICY)
      throw new Error('malformed admission reply');
    return reply;
  }

  /**
   * Bounds how long a decision waits for Redis (RATE_LIMIT_TIMEOUT_MS). When the timer fires, the
   * verdict waits one more turn of the event loop (setImmediate runs after the I/O poll phase): a
   * reply already sitting in the socket is still taken. Without that, a busy event loop (timers run
   * before I/O) would turn healthy-but-late-read replies into false "Redis is down" decisions.
   */
  private withDecisionTimeout<T>(work: Promise<T>): Promise<T> {
    if (this.store.kind !== 'redis') return work;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        setImmediate(() => {
          if (settled) return;
          settled = true;
          reject(new Error(`no answer within ${this.config.decisionTimeoutMs} ms`));
        });
      }, this.config.decisionTimeoutMs);
      work.then(
        (value) => {
          clearTimeout(timer);
          if (settled) return;
          settled = true;
          resolve(value);
        },
        (err: unknown) => {
          clearTimeout(timer);
          if (settled) return;
          settled = true;
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  /**
   * The latest Redis time at which the script may still act: a request we already answered by the
   * failure mode (timeout) must never be counted later, when a frozen Redis wakes up and runs the
   * queued script. 0 (no deadline) in process or before the Redis clock is known.
   */
  private deadline(): number {
    if (this.store.kind !== 'redis' || !this.clockKnown) return 0;
    return Math.floor(Date.now() + this.clockOffsetMs + this.config.decisionTimeoutMs * DEADLINE_SHARE);
  }

  /** A request's unique member in every log it enters: instance id + sequence, never a timestamp. */
  private member(): string {
    this.sequence = (this.sequence + 1) % Number.MAX_SAFE_INTEGER;
    return `${this.instance}.${this.sequence.toString(36)}`;
  }

  private outcomes(policies: readonly Policy[], reply: number[]): PolicyOutcome[] {
    return policies.map((policy, i) => {
      const b = 2 + i * RESULTS_PER_POLICY;
      return {
        policy,
        admitted: reply[b] === 1,
        remaining: reply[b + 1]!,
        current: reply[b + 2]!,
        resetMs: reply[b + 3]!,
        retryMs: reply[b + 4]!,
      };
    });
  }

  private noteFailure(reason: string, counted: boolean): void {
    if (counted) {
      this.counters.storeErrors++;
      this.consecutiveFailures++;
      if (this.consecutiveFailures >= CIRCUIT_FAILURES) this.circuitOpenUntil = Date.now() + CIRCUIT_OPEN_MS;
    }
    this.failuresSinceWarn++;
    const now = Date.now();
    if (now - this.lastWarnAt >= WARN_EVERY_MS) {
      this.logger.warn(
        `rate limiter store unavailable (${reason}): failing ${this.config.failureMode} — ` +
          `${this.failuresSinceWarn} decision(s) affected since the last report`,
      );
      this.lastWarnAt = now;
      this.failuresSinceWarn = 0;
    }
  }

  private policyCounter(name: string): { allowed: number; limited: number } {
    let c = this.counters.decisions.get(name);
    if (!c) {
      c = { allowed: 0, limited: 0 };
      this.counters.decisions.set(name, c);
    }
    return c;
  }

  /**
   * Charges an API key's actual token usage (the Relay calls this after each response). Only keys
   * with a TPM limit are charged; while a key's usage over the last minute is at or above its TPM,
   * its next requests are refused up front. Never throws (usage is best effort when Redis is down).
   */
  async chargeTokens(principal: Principal | undefined | null, tokens: number): Promise<void> {
    const tpm = principal?.apiKey?.tpm;
    if (!principal?.apiKeyId || tpm === null || tpm === undefined) return;
    const n = Math.floor(tokens);
    if (!Number.isFinite(n) || n <= 0) return;
    try {
      await this.store.run(ChargeTokensScript, budgetKeys(`key:${principal.apiKeyId}`), [
        this.member(),
        n,
        MINUTE_MS,
      ]);
      this.counters.tokensCharged += n;
    } catch (err) {
      this.counters.chargeErrors++;
      this.noteFailure(`charging tokens: ${err instanceof Error ? err.message : String(err)}`, false);
    }
  }

  /** Current state of every policy of an admin subject (`key:{id}`, `user:{id}`, `ip:{address}`). */
  async inspect(subjectText: string): Promise<SubjectReport> {
    const subject = this.parse(subjectText);
    let limits: { rpm: number | null; tpm: number | null } | null = null;
    if (subject.kind === 'key') {
      limits = await this.keyLimits.find(subject.id);
      if (!limits)
        throw ApiError.notFound(`No API key with id ${subject.id}`, 'api_key_not_found', 'subject');
    }
    const policies = subjectPolicies(this.config, subject, this.routes(), limits);
    let reply: number[];
    try {
      reply = await this.run(policies, true);
    } catch {
      throw ApiError.serviceUnavailable(
        'The rate limiter cannot reach its store; retry shortly',
        1,
        'rate_limiter_unavailable',
      );
    }
    return {
      subject: subject.text,
      policies: this.outcomes(policies, reply).map((o) => ({
        name: o.policy.name,
        algorithm: o.policy.algorithm,
        unit: o.policy.unit,
        limit: o.policy.limit,
        burst: o.policy.burst,
        remaining: o.remaining,
        current: o.current,
        resetMs: o.resetMs,
        windowSeconds: seconds(o.policy.windowMs),
      })),
    };
  }

  /** Forgets every counter of a subject (all algorithms, all route policies). */
  async reset(subjectText: string): Promise<Subject> {
    const subject = this.parse(subjectText);
    try {
      await this.store.run(ResetScript, subjectKeys(subject, this.routes()), []);
    } catch {
      throw ApiError.serviceUnavailable(
        'The rate limiter cannot reach its store; retry shortly',
        1,
        'rate_limiter_unavailable',
      );
    }
    return subject;
  }

  /** The subject a `key:…` / `user:…` / `ip:…` text names; 400 when malformed. */
  parse(subjectText: string): Subject {
    const subject = parseSubject(subjectText);
    if (!subject) {
      throw ApiError.badRequest(
        'subject must be key:{api_key_id}, user:{user_id} (uuids) or ip:{address}',
        'subject',
        'invalid_subject',
      );
    }
    return subject;
  }

  private routes(): Required<RateLimitOptions>[] {
    return declaredRoutePolicies();
  }

  /** Counters for the Observability module. */
  stats(): RateLimitStats {
    const c = this.counters;
    return {
      decisions: Object.fromEntries([...c.decisions].map(([k, v]) => [k, { ...v }])),
      storeErrors: c.storeErrors,
      failedOpen: c.failedOpen,
      failedClosed: c.failedClosed,
      shortCircuited: c.shortCircuited,
      tokensCharged: c.tokensCharged,
      chargeErrors: c.chargeErrors,
      decisionLatency: {
        count: c.latency.count,
        sumMs: c.latency.sumMs,
        maxMs: c.latency.maxMs,
        // cumulative, Prometheus style: le → decisions that took at most that long
        buckets: LATENCY_BOUNDS_MS.map((le, i) => ({
          le,
          count: c.latency.buckets.slice(0, i + 1).reduce((a, b) => a + b, 0),
        })),
      },
    };
  }
}
