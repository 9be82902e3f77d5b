import { HttpStatus, Inject, Injectable, Logger, OnModuleInit, Optional } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { randomBytes } from 'node:crypto';
import { ApiError } from '../common/api-error.js';
import type { Principal } from '../common/principal.js';
import type { AppConfig, RateLimitConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import {
  RedisUnavailableError,
  type LivenessSource,
  type RedisUnavailableCause,
} from '../redis/redis-liveness.js';
import { AtomicStore, type AtomicScript, type ScriptValue } from '../state/atomic-store.js';
import { ClientIpService } from './client-ip.service.js';
import { rateLimitHeaders, retryAfterSeconds, seconds, tightest, type PolicyOutcome } from './headers.js';
import {
  principalPolicies,
  budgetKeys,
  MINUTE_MS,
  spendBudgetKey,
  spendBudgetPolicy,
  spendReservationsKey,
  type SpendReservation,
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
  chargeBudget,
  ChargeTokensScript,
  CLIENT_LIMITS_LUA,
  clientEvaluate,
  KIND_TOKEN_BUCKET,
  clientReply,
  ARGS_PER_POLICY,
  RESULTS_PER_POLICY,
  RenewSpendScript,
  ResetScript,
  RollbackScript,
  SettleSpendScript,
  settleSpendLocal,
  SPEND_BUDGET_LUA,
  SpendStateScript,
  STALE,
  TOKEN_CHARGE_LUA,
} from './rate-limit.scripts.js';
import {
  declaredRoutePolicies,
  type ClientLimitsStep,
  type CombinedRun,
  type PolicyState,
  type RateLimitOptions,
  type RateLimitStats,
  type TokenChargeStep,
} from './rate-limit.types.js';

/** The limiter's own AtomicStore: Redis through its own fail-fast connection, or the in-process one. */
export const RATE_LIMIT_STORE = Symbol('RATE_LIMIT_STORE');
/** Distributed: what judges whether the limiter's Redis connection can answer (null in process). */
export const RATE_LIMIT_LIVENESS = Symbol('RATE_LIMIT_LIVENESS');

const WARN_EVERY_MS = 10_000;
const STARTUP_WAIT_MS = 2000;
/** Retry-After (s) of a 503 from the limiter (failure mode closed, or load shed). */
const RETRY_AFTER_SECONDS = 1;
/** The Redis clock offset is the smallest one seen over the last two windows of this length. */
const OFFSET_WINDOW_MS = 10_000;
/** Local clock for deadlines: wall-clock based but monotonic (a stepped system clock does not move it). */
const localNow = (): number => performance.timeOrigin + performance.now();
/** Upper bounds (ms) of the decision latency histogram buckets; one more bucket for the rest. */
export const LATENCY_BOUNDS_MS = [1, 2, 5, 10, 25, 50, 100, 200, 500, 1000];

/**
 * `unavailable`: Redis cannot answer (connection not ready, silent, lost, error reply) — decided by
 * RATE_LIMIT_FAILURE_MODE. `overloaded`: Redis answered, but reached the decision after its deadline
 * (it had fallen more than RATE_LIMIT_TIMEOUT_MS behind — RATE_LIMIT_ADMIN_TIMEOUT_MS for a non-relay
 * route): the request is shed (503, Retry-After), never admitted, whatever the failure mode.
 */
export type DecisionResult =
  | { kind: 'admitted' | 'limited'; outcomes: PolicyOutcome[] }
  | { kind: 'unavailable'; reason: string; cause: RedisUnavailableCause }
  | { kind: 'overloaded'; reason: string };

/** What the guard (or the auth-failure hook) does with a request. */
export interface Verdict {
  headers: Record<string, string>;
  /** Set when the request must be refused (429, or 503 with RATE_LIMIT_FAILURE_MODE=closed). */
  error: ApiError | null;
  decision: DecisionResult;
}

/**
 * The verdict of an admission with these outcomes (its headers rebuilt from them): the relay's
 * local admission grants step a block's Remaining down per request (admission-grants.ts).
 */
export function admittedVerdict(outcomes: PolicyOutcome[]): Verdict {
  const limits = outcomes.filter((o) => o.policy.unit !== 'micro_usd');
  return { headers: rateLimitHeaders(limits, false), error: null, decision: { kind: 'admitted', outcomes } };
}

/** A decision taken together with another atomic step (decideWith). */
export interface CombinedDecision<T> {
  verdict: Verdict;
  /** The other step's reply: null unless the client limits admitted and the store answered. */
  rest: T | null;
  /** The store's answer was lost: it may still run the script (what it reserved must be reconciled). */
  lost: boolean;
}

/** The client limits as a step of a larger script (the relay's combined admission). */
export const CLIENT_LIMITS_STEP: ClientLimitsStep = {
  lua: CLIENT_LIMITS_LUA,
  evaluate: clientEvaluate,
  reply: clientReply,
};

/**
 * The client's token charges as a step of another script (the relay composes it into the key
 * pool's release: an answer is one store call): the API key's TPM budget and its team's, each a
 * (log, sum) pair of KEYS; ARGV member, tokens, window, pairs (absent: 1). Then the spend
 * settlement (docs/spend.md "Budgets"): ns (counters), and KEYS ns × (counter, reservations),
 * ARGV spend member, reserved, actual, ttl_ms (fg_rl_settle). Its inputs come from `answerCharge`.
 */
export const TOKEN_CHARGE_STEP: TokenChargeStep = {
  name: 'rl-charge-settle',
  lua: `${TOKEN_CHARGE_LUA}
${SPEND_BUDGET_LUA}
local function fg_ride(K, A, ko, ao, now)
  local np = tonumber(A[ao + 4] or '1')
  for j = 0, np - 1 do
    fg_rl_charge(K[ko + 2 * j + 1], K[ko + 2 * j + 2], A[ao + 1], tonumber(A[ao + 2]), tonumber(A[ao + 3]), now)
  end
  for j = 1, tonumber(A[ao + 5] or '0') do
    local c = ko + 2 * np + 2 * j
    fg_rl_settle(K[c - 1], K[c], A[ao + 6], tonumber(A[ao + 7]), tonumber(A[ao + 8]), tonumber(A[ao + 9]), now)
  end
end
`,
  run(db, keys, args, nowMs) {
    const np = Number(args[3] ?? 1);
    for (let j = 0; j < np; j++) {
      chargeBudget(db, keys[2 * j]!, keys[2 * j + 1]!, args[0]!, Number(args[1]), Number(args[2]), nowMs);
    }
    const ns = Number(args[4] ?? 0);
    for (let j = 0; j < ns; j++) {
      const c = 2 * np + 2 * j;
      settleSpendLocal(
        db,
        keys[c]!,
        keys[c + 1]!,
        args[5]!,
        Number(args[6]),
        Number(args[7]),
        Number(args[8]),
        nowMs,
      );
    }
  },
};

/** One budget counter a request reserved on: the counter and its reservations (same hash slot). */
export interface SpendCounter {
  key: string;
  res: string;
}

/**
 * A request's spend settlement (docs/spend.md "Budgets"): its counters, the member its reservations
 * carry, what it reserved and what it actually cost (µ$), and the reservation TTL (how long the
 * settled mark stays when no reservation was found). Idempotent: sending it twice counts once.
 */
export interface SpendSettlement {
  counters: SpendCounter[];
  member: string;
  reserved: number;
  actual: number;
  ttlMs: number;
}

/** A budget counter's state (the admin API): null counter = none this period. */
export interface SpendState {
  counterMicros: number | null;
  reservedMicros: number;
  reservations: number;
}

/**
 * The TPM budgets a principal's tokens are charged to: its API key's (when the key has a tpm) and
 * its team's (when the team has one), each a (log, sum) pair under its own subject.
 */
export function chargedBudgets(principal: Principal | undefined | null): [string, string][] {
  const budgets: [string, string][] = [];
  const tpm = principal?.apiKey?.tpm;
  if (principal?.apiKeyId && tpm !== null && tpm !== undefined)
    budgets.push(budgetKeys(`key:${principal.apiKeyId}`));
  const team = principal?.team;
  if (team && team.tpm !== null && team.tpm > 0) budgets.push(budgetKeys(`team:${team.id}`));
  return budgets;
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

/**
 * Finds an API key's own limits, and a team's, for the admin API (the auth module's ApiKeysService
 * and TeamsService, wired in the module).
 */
export abstract class KeyLimitsLookup {
  abstract find(apiKeyId: string): Promise<{ rpm: number | null; tpm: number | null } | null>;
  /** Absent: team subjects answer 404 (a lookup wired without the auth module, in tests). */
  findTeam?(teamId: string): Promise<{ rpm: number | null; tpm: number | null } | null>;
}

/**
 * The rate limiter. Every decision is ONE AtomicStore run of AdmissionScript over every applicable
 * policy (all-or-nothing). Redis being unavailable — its connection not ready, or Redis silent for
 * RATE_LIMIT_TIMEOUT_MS while a decision waits (RedisLiveness) — is answered by
 * RATE_LIMIT_FAILURE_MODE. Our own load is not: a busy event loop only makes decisions slower, and a
 * decision Redis itself reaches too late is shed (503), never admitted. Other modules call
 * `chargeTokens` (Relay, after each response) and `stats` (Observability).
 */
@Injectable()
export class RateLimitService implements OnModuleInit {
  private readonly logger = new Logger('RateLimit');
  private readonly config: RateLimitConfig;
  private readonly decided = new WeakSet<object>();
  /** Requests whose policies the guard computed for the route's own admission step to decide. */
  private readonly deferred = new WeakMap<object, Policy[]>();
  /** The member a request with spend reservations is decided with (its reservations carry it). */
  private readonly deferredMember = new WeakMap<object, string>();
  private readonly instance = randomBytes(6).toString('base64url');
  private sequence = 0;

  // Redis clock: an upper bound of (Redis TIME − localNow()), the smallest (Redis time − write
  // time) seen in the current and the previous OFFSET_WINDOW_MS. Taken from the write time, never
  // from when our loop got round to reading the reply, so a busy loop cannot skew it.
  private offsetBest = Number.POSITIVE_INFINITY;
  private offsetPrevious = Number.POSITIVE_INFINITY;
  private offsetWindowStart = 0;
  private clockOffsetMs = 0;
  private clockKnown = false;

  // Rate-limited warnings: one line per WARN_EVERY_MS with the count since the last one.
  private lastWarnAt = 0;
  private failuresSinceWarn = 0;
  private lastRollbackWarnAt = 0;
  private rollbackFailuresSinceWarn = 0;

  private readonly counters = {
    decisions: new Map<string, { allowed: number; limited: number }>(),
    storeErrors: 0,
    failedOpen: 0,
    failedClosed: 0,
    shortCircuited: 0,
    shed: 0,
    unavailable: new Map<string, number>(),
    tokensCharged: 0,
    chargeErrors: 0,
    rollbacks: 0,
    rollbackFailures: 0,
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
    @Optional() @Inject(RATE_LIMIT_LIVENESS) private readonly liveness: LivenessSource | null = null,
  ) {
    this.config = appConfig.rateLimit;
  }

  /** Called with every decision's wall time in ms (the metrics module observes a histogram). */
  onDecision: ((ms: number, kind: DecisionResult['kind']) => void) | null = null;

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
    // the guard's path: a non-relay route (the relay's are @RateLimitInAdmission: decideWith /
    // decideDeferred) waits up to RATE_LIMIT_ADMIN_TIMEOUT_MS; a request refused anyway does not
    const timeoutMs = alreadyRefused ? this.config.decisionTimeoutMs : this.config.adminDecisionTimeoutMs;
    const decision = await this.decide(this.policiesOf(request, limits), undefined, timeoutMs);
    if (alreadyRefused && decision.kind === 'unavailable') return { headers: {}, error: null, decision };
    return this.verdict(decision);
  }

  private policiesOf(request: FastifyRequest, limits: RequestLimits): Policy[] {
    return principalPolicies({
      config: this.config,
      principal: request.principal,
      clientIp: this.clientIp(request),
      routes: limits.routes,
      overrides: limits.overrides,
      skip: limits.skip,
    });
  }

  /**
   * For a route that decides its client limits in its own admission step (@RateLimitInAdmission):
   * computes the policies that apply, exactly as `evaluate` would, without asking the store. The
   * request counts as decided (nothing else counts it); `decideWith` or `decideDeferred` decides it.
   */
  defer(request: FastifyRequest, limits: RequestLimits = {}): void {
    this.decided.add(request);
    this.deferred.set(request, this.policiesOf(request, limits));
  }

  /**
   * Adds a request's spend-budget reservations to its deferred client limits: they are decided in
   * the same atomic step (refused → 429 budget_exceeded, nothing recorded anywhere). Call after
   * `defer`, before deciding. Returns the policies added (their counters settle the reservation).
   */
  deferSpend(
    request: FastifyRequest,
    reservations: readonly SpendReservation[],
  ): { policies: Policy[]; member: string } | null {
    const policies = this.deferred.get(request);
    if (!policies || reservations.length === 0) return null;
    const added = reservations.map(spendBudgetPolicy);
    policies.push(...added);
    let member = this.deferredMember.get(request);
    if (!member) {
      member = this.member();
      this.deferredMember.set(request, member);
    }
    return { policies: added, member };
  }

  /** True while the request has client limits waiting to be decided (once: deciding takes them). */
  hasDeferred(request: object): boolean {
    return this.deferred.has(request);
  }

  /** The deferred client limits of a request (ADMISSION_GRANTS: which local grant may admit it). */
  deferredPolicies(request: object): readonly Policy[] | undefined {
    return this.deferred.get(request);
  }

  /**
   * The deferred client limits admitted by a local admission grant (ADMISSION_GRANTS): the request
   * takes a unit its instance reserved in every window beforehand; nothing is asked of the store.
   */
  admitLocally(request: object): void {
    this.deferred.delete(request);
  }

  /** The deferred client limits decided alone (a path without a combined step); one store call. */
  async decideDeferred(request: FastifyRequest): Promise<Verdict> {
    const policies = this.deferred.get(request) ?? [];
    this.deferred.delete(request);
    return this.verdict(await this.decide(policies, this.deferredMember.get(request)));
  }

  /**
   * The deferred client limits decided INSIDE another atomic step, in one store run on the
   * limiter's own connection (same liveness, deadline, clock and failure semantics as `decide`).
   * The client step evaluates first; when it refuses, the script must change nothing else. A
   * request without deferred policies, or whose policies are all skipped, is decided here too
   * (admitted, no headers) — `rest` is then still the other step's reply.
   */
  async decideWith<T>(request: FastifyRequest, combined: CombinedRun<T>): Promise<CombinedDecision<T>> {
    // a combined script spans the client's and the provider's slots: a cluster refuses it
    // (CROSSSLOT), which would read as a store failure and fail open — callers check `stepped`
    if (this.store.slotted)
      throw new Error(
        'decideWith needs a single Redis; on a Redis Cluster use decideDeferred (see `stepped`)',
      );
    const policies = this.deferred.get(request) ?? [];
    this.deferred.delete(request);
    const started = performance.now();
    let kind: DecisionResult['kind'] = 'unavailable';
    try {
      const inputs = this.inputs(policies, false, this.deferredMember.get(request));
      const built = combined.build(inputs);
      let sent: { reply: ScriptValue; writtenAt: number };
      const io = { written: false };
      try {
        sent = await this.send(built.script, built.keys, built.args, io);
      } catch (err) {
        const decision = this.failed(err);
        kind = decision.kind;
        // refused before writing (connection known unavailable): nothing can run later
        return { verdict: this.verdict(decision), rest: null, lost: io.written };
      }
      const { client, rest } = combined.decode(sent.reply);
      let reply: number[];
      try {
        reply = this.checked(policies, client, sent.writtenAt);
      } catch (err) {
        const decision = this.failed(err);
        kind = decision.kind;
        return { verdict: this.verdict(decision), rest: null, lost: false };
      }
      const decision = this.judged(policies, reply);
      kind = decision.kind;
      return {
        verdict: this.verdict(decision),
        rest: decision.kind === 'admitted' ? rest : null,
        lost: false,
      };
    } finally {
      if (policies.length > 0) {
        const ms = performance.now() - started;
        this.observeLatency(ms);
        this.onDecision?.(ms, kind);
      }
    }
  }

  private verdict(decision: DecisionResult): Verdict {
    if (decision.kind === 'overloaded') {
      this.counters.shed++;
      return {
        headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
        error: ApiError.serviceUnavailable(
          'The rate limiter is overloaded and could not decide this request in time; retry shortly',
          RETRY_AFTER_SECONDS,
          'rate_limiter_overloaded',
        ),
        decision,
      };
    }
    if (decision.kind === 'unavailable') {
      if (this.config.failureMode === 'open') {
        this.counters.failedOpen++;
        return { headers: {}, error: null, decision };
      }
      this.counters.failedClosed++;
      return {
        headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
        error: ApiError.serviceUnavailable(
          'The rate limiter cannot reach its store, and RATE_LIMIT_FAILURE_MODE is closed; retry shortly',
          RETRY_AFTER_SECONDS,
          'rate_limiter_unavailable',
        ),
        decision,
      };
    }
    const refused = decision.kind === 'limited';
    // the outcomes themselves unless a spend budget is among them (no copy per request)
    const limits = hasSpendBudget(decision.outcomes)
      ? decision.outcomes.filter((o) => o.policy.unit !== 'micro_usd')
      : decision.outcomes;
    const headers = rateLimitHeaders(limits, refused && limits.some((o) => !o.admitted));
    if (!refused) return { headers, error: null, decision };
    const budget = decision.outcomes.find((o) => !o.admitted && o.policy.unit === 'micro_usd');
    if (budget) return { headers, error: budgetError(decision.outcomes, budget), decision };
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
  async decide(
    policies: readonly Policy[],
    member?: string,
    timeoutMs = this.config.decisionTimeoutMs,
  ): Promise<DecisionResult> {
    if (policies.length === 0) return { kind: 'admitted', outcomes: [] };
    const started = performance.now();
    let kind: DecisionResult['kind'] = 'unavailable';
    try {
      const result = await this.decideNow(policies, member, timeoutMs);
      kind = result.kind;
      return result;
    } finally {
      const ms = performance.now() - started;
      this.observeLatency(ms);
      this.onDecision?.(ms, kind);
    }
  }

  private observeLatency(ms: number): void {
    const h = this.counters.latency;
    h.count++;
    h.sumMs += ms;
    if (ms > h.maxMs) h.maxMs = ms;
    let i = 0;
    while (i < LATENCY_BOUNDS_MS.length && ms > LATENCY_BOUNDS_MS[i]!) i++;
    h.buckets[i]!++;
  }

  private async decideNow(
    policies: readonly Policy[],
    member: string | undefined,
    timeoutMs: number,
  ): Promise<DecisionResult> {
    if (this.store.slotted) {
      const steps = subjectSteps(policies);
      if (steps.length > 1) return this.decideInSteps(policies, steps, member, timeoutMs);
    }
    let reply: number[];
    try {
      reply = await this.run(policies, false, member, timeoutMs);
    } catch (err) {
      return this.failed(err);
    }
    return this.judged(policies, reply);
  }

  /**
   * True on a Redis Cluster: a decision over several subjects runs as ordered single-slot steps
   * (decideInSteps), so it cannot be folded into another script (the relay then decides the client
   * limits with `decideDeferred` and acquires on the provider's slot separately).
   */
  get stepped(): boolean {
    return this.store.slotted;
  }

  /**
   * Redis Cluster: the policies of each subject (`steps`, in order: API key, user, IP — see
   * subjectSteps) decided as one AdmissionScript run per subject, each atomic on its slot, all with
   * the same member. Each step carries its own deadline, taken when it is sent (a step Redis runs
   * after it answers STALE and changes nothing). The first step that refuses, answers STALE or
   * fails ends the decision and rolls back the steps already committed (RollbackScript). The reply
   * is merged in policy order from the steps that ran: a rolled-back step reports its state without
   * the request; the policies of steps that never ran are not reported (no headers for them).
   */
  private async decideInSteps(
    policies: readonly Policy[],
    steps: Policy[][],
    member = this.member(),
    timeoutMs = this.config.decisionTimeoutMs,
  ): Promise<DecisionResult> {
    const committed: { policies: Policy[]; keys: string[]; args: (string | number)[]; reply: number[] }[] =
      [];
    let refused: { policies: Policy[]; reply: number[] } | null = null;
    for (const step of steps) {
      // each step's own deadline (taken as it is sent): a busy loop between two steps delays the
      // second, it does not make it stale
      const { keys, args } = this.inputs(step, false, member, this.deadline(timeoutMs));
      let reply: number[];
      try {
        const sent = await this.send(AdmissionScript, keys, args, undefined, timeoutMs);
        reply = this.checked(step, sent.reply, sent.writtenAt, timeoutMs);
      } catch (err) {
        await this.rollBack(committed, member);
        return this.failed(err);
      }
      if (reply[0] !== ADMITTED) {
        refused = { policies: step, reply };
        break;
      }
      committed.push({ policies: step, keys, args, reply });
    }
    if (refused) {
      await this.rollBack(committed, member);
      for (const c of committed) withoutRequest(c.policies, c.reply);
    }
    const ran = [...committed, ...(refused ? [refused] : [])];
    const order = new Map(policies.map((p, i) => [p, i]));
    const results = ran
      .flatMap((r) =>
        r.policies.map((p, i) => ({
          policy: p,
          values: r.reply.slice(2 + i * RESULTS_PER_POLICY, 2 + (i + 1) * RESULTS_PER_POLICY),
        })),
      )
      .sort((a, b) => order.get(a.policy)! - order.get(b.policy)!);
    const last = ran[ran.length - 1]!.reply;
    const merged = [refused ? refused.reply[0]! : ADMITTED, last[1]!, ...results.flatMap((r) => r.values)];
    return this.judged(
      results.map((r) => r.policy),
      merged,
    );
  }

  /**
   * Gives back the places the committed steps took (one RollbackScript per step, in parallel: each
   * on its own slot). A rollback that cannot run leaves its place taken until the policy's window
   * expires it: counted (floodgate_rate_limit_rollbacks_total{result="failed"}) and logged, one line
   * per WARN_EVERY_MS with the count since the last one.
   */
  private async rollBack(
    committed: readonly { keys: string[]; args: (string | number)[]; reply: number[] }[],
    member: string,
  ): Promise<void> {
    await Promise.all(
      committed.map(async (c) => {
        this.counters.rollbacks++;
        // the step's own KEYS/ARGV, the deadline's place holding the admission's time (its reply's
        // now_ms): a sub-bucket window gives back the bucket the request was counted in
        const args = [...c.args];
        args[1] = c.reply[1]!;
        try {
          await this.send(RollbackScript, c.keys, args);
        } catch (err) {
          this.counters.rollbackFailures++;
          this.rollbackFailuresSinceWarn++;
          const now = Date.now();
          if (now - this.lastRollbackWarnAt < WARN_EVERY_MS) return;
          this.logger.warn(
            `rate limit rollback of ${c.keys[0] ?? '?'} (request ${member}) failed: ${err instanceof Error ? err.message : String(err)} — ` +
              `its place stays taken until its window expires it; ${this.rollbackFailuresSinceWarn} rollback(s) failed since the last report`,
          );
          this.lastRollbackWarnAt = now;
          this.rollbackFailuresSinceWarn = 0;
        }
      }),
    );
  }

  /** A decision the store could not make: `overloaded` (stale) or `unavailable`, counted and logged. */
  private failed(err: unknown): DecisionResult {
    if (err instanceof StaleDecisionError) {
      this.noteFailure(err.message, 'overloaded');
      return { kind: 'overloaded', reason: err.message };
    }
    const unavailable =
      err instanceof RedisUnavailableError
        ? err
        : new RedisUnavailableError('connection_lost', err instanceof Error ? err.message : String(err));
    this.noteFailure(unavailable.message, unavailable.kind);
    return { kind: 'unavailable', reason: unavailable.message, cause: unavailable.kind };
  }

  private judged(policies: readonly Policy[], reply: number[]): DecisionResult {
    const outcomes = this.outcomes(policies, reply);
    const admitted = reply[0] === ADMITTED;
    for (const o of outcomes) {
      const c = this.policyCounter(o.policy.name);
      if (admitted) c.allowed++;
      else if (!o.admitted) c.limited++;
    }
    return { kind: admitted ? 'admitted' : 'limited', outcomes };
  }

  /** AdmissionScript's KEYS/ARGV for `policies` (a fresh member and deadline). */
  private inputs(
    policies: readonly Policy[],
    dryRun: boolean,
    member = this.member(),
    deadline = this.deadline(),
  ): { keys: string[]; args: (string | number)[] } {
    // preallocated, filled in one pass (every decision)
    let nKeys = 0;
    for (let i = 0; i < policies.length; i++) nKeys += policies[i]!.keys.length;
    const keys = new Array<string>(nKeys);
    const args = new Array<string | number>(4 + policies.length * ARGS_PER_POLICY);
    args[0] = member;
    args[1] = deadline;
    args[2] = dryRun ? 1 : 0;
    args[3] = policies.length;
    let k = 0;
    for (let i = 0; i < policies.length; i++) {
      const p = policies[i]!;
      for (let j = 0; j < p.keys.length; j++) keys[k++] = p.keys[j]!;
      const a = 4 + i * ARGS_PER_POLICY;
      args[a] = p.kind;
      args[a + 1] = p.limit;
      args[a + 2] = p.windowMs;
      args[a + 3] = p.burst;
      args[a + 4] = dryRun ? 0 : p.cost;
    }
    return { keys, args };
  }

  /**
   * One AdmissionScript run. Throws RedisUnavailableError (see RedisLiveness) and StaleDecisionError
   * (Redis ran the script after its deadline: it changed nothing).
   */
  private async run(
    policies: readonly Policy[],
    dryRun: boolean,
    member?: string,
    timeoutMs = this.config.decisionTimeoutMs,
  ): Promise<number[]> {
    const { keys, args } = this.inputs(policies, dryRun, member, this.deadline(timeoutMs));
    const { reply, writtenAt } = await this.send(AdmissionScript, keys, args, undefined, timeoutMs);
    return this.checked(policies, reply, writtenAt, timeoutMs);
  }

  /**
   * The client step's reply, checked: learns the Redis clock from it; throws StaleDecisionError
   * (ran after its deadline: changed nothing) or an Error when it is not the shape `policies` give.
   */
  private checked(
    policies: readonly Policy[],
    reply: ScriptValue,
    writtenAt: number,
    timeoutMs = this.config.decisionTimeoutMs,
  ): number[] {
    if (!Array.isArray(reply) || !reply.every((v) => typeof v === 'number'))
      throw new Error('malformed admission reply');
    const numbers = reply as number[];
    if (this.store.kind === 'redis' && typeof numbers[1] === 'number') this.learnClock(numbers[1], writtenAt);
    if (numbers[0] === STALE)
      throw new StaleDecisionError(`redis reached the decision more than ${timeoutMs} ms after it was sent`);
    if (numbers.length !== 2 + policies.length * RESULTS_PER_POLICY)
      throw new Error('malformed admission reply');
    return numbers;
  }

  /**
   * Every command of the limiter goes through here (`io.written`: set once the command is handed
   * to the connection — a failure before that cannot have run). Distributed: refused at once while the
   * connection is known unavailable; otherwise written (synchronously: the limiter's connection has
   * no auto-pipelining) and awaited through RedisLiveness, which gives up only when Redis is silent
   * (for `silenceMs`: a decision's own timeout, so never before its deadline has passed) or the
   * connection is lost — never on a timer our own busy loop could trip.
   */
  private async send<R extends ScriptValue>(
    script: AtomicScript<R>,
    keys: string[],
    args: (string | number)[],
    io: { written: boolean } = { written: false },
    silenceMs = this.config.decisionTimeoutMs,
  ): Promise<{ reply: R; writtenAt: number }> {
    if (this.store.kind !== 'redis' || !this.liveness) {
      const writtenAt = localNow();
      io.written = true;
      return { reply: await this.store.run(script, keys, args), writtenAt };
    }
    // one Redis: its connection; a cluster: the connection to the master owning the keys' slot
    const liveness = this.liveness.for(keys);
    const unavailable = liveness.unavailable();
    if (unavailable) {
      this.counters.shortCircuited++;
      throw unavailable;
    }
    const writtenAt = localNow();
    io.written = true;
    const started = performance.now();
    return { reply: await liveness.wait(this.store.run(script, keys, args), started, silenceMs), writtenAt };
  }

  /** Learns the Redis clock from a reply's Redis time and the local time the command was written. */
  private learnClock(redisMs: number, writtenAt: number): void {
    const now = localNow();
    if (now - this.offsetWindowStart >= OFFSET_WINDOW_MS) {
      this.offsetPrevious = this.offsetBest;
      this.offsetBest = Number.POSITIVE_INFINITY;
      this.offsetWindowStart = now;
    }
    this.offsetBest = Math.min(this.offsetBest, redisMs - writtenAt);
    this.clockOffsetMs = Math.min(this.offsetBest, this.offsetPrevious);
    this.clockKnown = true;
  }

  /**
   * The latest Redis time at which the script may still act: the write time plus `timeoutMs`, in
   * Redis time — RATE_LIMIT_TIMEOUT_MS for relayed calls (load shedding), RATE_LIMIT_ADMIN_TIMEOUT_MS
   * for non-relay routes (`evaluate`: the operator's API stays answerable while Redis lags behind a
   * relay flood). The decision waits through RedisLiveness with the same `timeoutMs` as its silence
   * threshold, so one given up on (Redis silent for that long since the write) can never be counted
   * later, when a frozen Redis wakes up and runs the queued script; a healthy Redis that reaches it
   * later than that answers STALE and the request is shed.
   * The offset is an upper bound (smallest Redis-time-minus-write-time seen), so the deadline is
   * never early. 0 (no deadline) in process or before the Redis clock is known.
   */
  private deadline(timeoutMs = this.config.decisionTimeoutMs): number {
    if (this.store.kind !== 'redis' || !this.clockKnown) return 0;
    return Math.ceil(localNow() + this.clockOffsetMs + timeoutMs);
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

  /**
   * Counts a decision Redis could not make, by cause, and logs one line per WARN_EVERY_MS saying
   * why (the connection state behind it) and what was done. `null` cause: not a decision (charging
   * tokens), logged only.
   */
  private noteFailure(reason: string, cause: RedisUnavailableCause | 'overloaded' | null): void {
    if (cause !== null) {
      this.counters.storeErrors++;
      this.counters.unavailable.set(cause, (this.counters.unavailable.get(cause) ?? 0) + 1);
    }
    this.failuresSinceWarn++;
    const now = Date.now();
    if (now - this.lastWarnAt >= WARN_EVERY_MS) {
      const action =
        cause === 'overloaded'
          ? 'shedding load (503)'
          : cause === null
            ? 'not charged'
            : `failing ${this.config.failureMode}`;
      this.logger.warn(
        `rate limiter store ${cause === 'overloaded' ? 'overloaded' : 'unavailable'} (${reason}): ${action} — ` +
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
    const budgets = chargedBudgets(principal);
    if (budgets.length === 0) return;
    const n = Math.floor(tokens);
    if (!Number.isFinite(n) || n <= 0) return;
    try {
      // One step per budget: on a Redis Cluster the key's and the team's live in different slots.
      const member = this.member();
      await Promise.all(budgets.map((keys) => this.send(ChargeTokensScript, keys, [member, n, MINUTE_MS])));
      this.counters.tokensCharged += n;
    } catch (err) {
      this.counters.chargeErrors++;
      this.noteFailure(`charging tokens: ${err instanceof Error ? err.message : String(err)}`, null);
    }
  }

  /**
   * True when the token charge can ride in another step of the shared store (TOKEN_CHARGE_STEP
   * with `tokenCharge`'s inputs): in process, or on a single Redis — not on a Redis Cluster (the
   * client's keys and the key pool's live in different slots: `chargeTokens` runs its own step).
   */
  get chargeRides(): boolean {
    return !this.store.slotted;
  }

  /**
   * `chargeTokens` as TOKEN_CHARGE_STEP's KEYS/ARGV, for a caller that runs it inside its own
   * script (null: nothing to charge — no key, no TPM limit, no tokens). Report what became of it
   * with `chargeSettled`.
   */
  tokenCharge(
    principal: Principal | undefined | null,
    tokens: number,
  ): { keys: string[]; args: string[] } | null {
    const budgets = chargedBudgets(principal);
    if (budgets.length === 0) return null;
    const n = Math.floor(tokens);
    if (!Number.isFinite(n) || n <= 0) return null;
    return {
      keys: budgets.flat(),
      args: [this.member(), String(n), String(MINUTE_MS), String(budgets.length)],
    };
  }

  /**
   * `tokenCharge` with the request's spend settlement riding too (either may be absent; null when
   * both are). Same rules: report with `chargeSettled`.
   */
  answerCharge(
    principal: Principal | undefined | null,
    tokens: number,
    spend: SpendSettlement | null,
  ): { keys: string[]; args: string[] } | null {
    const charge = this.tokenCharge(principal, tokens);
    const settle = spend && spend.counters.length > 0 ? spend : null;
    if (!charge && !settle) return null;
    const keys = charge ? [...charge.keys] : [];
    const args = charge ? [...charge.args] : [this.member(), '0', String(MINUTE_MS), '0'];
    if (settle) {
      for (const c of settle.counters) keys.push(c.key, c.res);
      args.push(String(settle.counters.length), ...settleArgs(settle));
    }
    return { keys, args };
  }

  /**
   * Settles spend on its own (a Redis Cluster's answer path, a request that never got a lease, a
   * settlement whose ride's answer was lost): SettleSpendScript, one step (one per counter on a
   * cluster: different slots). Idempotent, so a step whose answer is lost (store error, timeout) is
   * sent once more. Never throws (logged and counted); false when a step never got an answer.
   */
  async settleSpend(spend: SpendSettlement): Promise<boolean> {
    if (spend.counters.length === 0) return true;
    const args = settleArgs(spend);
    const groups = this.store.slotted ? spend.counters.map((c) => [c]) : [spend.counters];
    const results = await Promise.all(
      groups.map(async (g) => {
        const keys = g.flatMap((c) => [c.key, c.res]);
        for (let attempt = 0; ; attempt++) {
          try {
            await this.send(SettleSpendScript, keys, args);
            return true;
          } catch (err) {
            if (attempt === 0) continue;
            this.counters.chargeErrors++;
            this.noteFailure(`settling spend: ${err instanceof Error ? err.message : String(err)}`, null);
            return false;
          }
        }
      }),
    );
    return results.every(Boolean);
  }

  /**
   * Keeps live requests' reservations (`<member>:<µ$>` in each counter's reservations) for another
   * `ttlMs`: one step (one per counter on a cluster). Returns, per entry, whether it was still there
   * (null: the store did not answer). Never throws.
   */
  async renewSpend(
    entries: readonly { res: string; member: string }[],
    ttlMs: number,
  ): Promise<(boolean | null)[]> {
    if (entries.length === 0) return [];
    const groups = this.store.slotted ? entries.map((e) => [e]) : [entries];
    const out = await Promise.all(
      groups.map(async (g) => {
        try {
          const { reply } = await this.send(
            RenewSpendScript,
            g.map((e) => e.res),
            [String(ttlMs), ...g.map((e) => e.member)],
          );
          return (reply as number[]).map((v) => v === 1);
        } catch {
          return g.map(() => null);
        }
      }),
    );
    return out.flat();
  }

  /**
   * A subject's spend counter for one period (the admin API): reservations past their deadline are
   * given back first. 503 when the store cannot answer.
   */
  async spendState(subject: string, periodId: string): Promise<SpendState> {
    const key = spendBudgetKey(subject, periodId);
    let reply: number[];
    try {
      reply = (
        await this.send(
          SpendStateScript,
          [key, spendReservationsKey(subject, periodId)],
          [],
          undefined,
          this.config.adminDecisionTimeoutMs,
        )
      ).reply;
    } catch {
      throw ApiError.serviceUnavailable(
        'The rate limiter cannot reach its store; retry shortly',
        1,
        'rate_limiter_unavailable',
      );
    }
    return {
      counterMicros: reply[0]! < 0 ? null : reply[0]!,
      reservedMicros: reply[1]!,
      reservations: reply[2]!,
    };
  }

  /** Deletes a subject's spend counters (and their reservations) for the given periods (admin reset). */
  async resetSpend(subject: string, periodIds: readonly string[]): Promise<void> {
    const keys = periodIds.flatMap((id) => [spendBudgetKey(subject, id), spendReservationsKey(subject, id)]);
    try {
      await this.send(ResetScript, keys, [], undefined, this.config.adminDecisionTimeoutMs);
    } catch {
      throw ApiError.serviceUnavailable(
        'The rate limiter cannot reach its store; retry shortly',
        1,
        'rate_limiter_unavailable',
      );
    }
  }

  /** A `tokenCharge` another step carried: `ran` when the store ran it (else it is lost: best effort). */
  chargeSettled(tokens: number, ran: boolean): void {
    if (ran) {
      this.counters.tokensCharged += Math.floor(tokens);
      return;
    }
    this.counters.chargeErrors++;
    this.noteFailure("charging tokens: the answer path's store step did not run", null);
  }

  /** Current state of every policy of an admin subject (`key:{id}`, `user:{id}`, `team:{id}`, `ip:{address}`). */
  async inspect(subjectText: string): Promise<SubjectReport> {
    const subject = this.parse(subjectText);
    let limits: { rpm: number | null; tpm: number | null } | null = null;
    if (subject.kind === 'key') {
      limits = await this.keyLimits.find(subject.id);
      if (!limits)
        throw ApiError.notFound(`No API key with id ${subject.id}`, 'api_key_not_found', 'subject');
    } else if (subject.kind === 'team') {
      limits = (await this.keyLimits.findTeam?.(subject.id)) ?? null;
      if (!limits) throw ApiError.notFound(`No team with id ${subject.id}`, 'team_not_found', 'subject');
    }
    const policies = subjectPolicies(this.config, subject, this.routes(), limits);
    let reply: number[];
    try {
      reply = await this.run(policies, true, undefined, this.config.adminDecisionTimeoutMs);
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
        // subjectPolicies builds rate limits only (spend budgets are per request: deferSpend)
        unit: o.policy.unit as 'requests' | 'tokens',
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
      await this.send(
        ResetScript,
        subjectKeys(subject, this.routes()),
        [],
        undefined,
        this.config.adminDecisionTimeoutMs,
      );
    } catch {
      throw ApiError.serviceUnavailable(
        'The rate limiter cannot reach its store; retry shortly',
        1,
        'rate_limiter_unavailable',
      );
    }
    return subject;
  }

  /** The subject a `key:…` / `user:…` / `team:…` / `ip:…` text names; 400 when malformed. */
  parse(subjectText: string): Subject {
    const subject = parseSubject(subjectText);
    if (!subject) {
      throw ApiError.badRequest(
        'subject must be key:{api_key_id}, user:{user_id}, team:{team_id} (uuids) or ip:{address}',
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
      shed: c.shed,
      unavailableByCause: Object.fromEntries(c.unavailable),
      tokensCharged: c.tokensCharged,
      chargeErrors: c.chargeErrors,
      rollbacks: c.rollbacks,
      rollbackFailures: c.rollbackFailures,
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

function hasSpendBudget(outcomes: readonly PolicyOutcome[]): boolean {
  for (let i = 0; i < outcomes.length; i++) if (outcomes[i]!.policy.unit === 'micro_usd') return true;
  return false;
}

/**
 * The policies grouped by subject, in the order their subjects first appear — `applicablePolicies`
 * lists the API key (its request and TPM policies) first, then the user, then the IP; route
 * policies join their subject's group. One group per hash slot (policies.ts subjectTag).
 */
export function subjectSteps(policies: readonly Policy[]): Policy[][] {
  const groups = new Map<string, Policy[]>();
  for (const p of policies) {
    const g = groups.get(p.subject);
    if (g) g.push(p);
    else groups.set(p.subject, [p]);
  }
  return [...groups.values()];
}

/** SettleSpendScript's ARGV (and the rider's spend part): member, reserved, actual, ttl_ms. */
function settleArgs(s: SpendSettlement): string[] {
  return [
    s.member,
    String(Math.trunc(s.reserved)),
    String(Math.max(0, Math.trunc(s.actual))),
    String(s.ttlMs),
  ];
}

/** A rolled-back step's reply as if it had not admitted the request: its place given back. */
function withoutRequest(policies: readonly Policy[], reply: number[]): void {
  policies.forEach((p, i) => {
    if (p.cost === 0) return;
    const b = 2 + i * RESULTS_PER_POLICY;
    const capacity = p.kind === KIND_TOKEN_BUCKET ? p.burst : p.limit;
    reply[b + 1] = Math.min(capacity, reply[b + 1]! + p.cost);
    reply[b + 2] = Math.max(0, reply[b + 2]! - p.cost);
  });
}

/**
 * 429 budget_exceeded: names the subject (API key, user, team) and period; Retry-After = seconds to
 * the latest reset among the refusing budgets, none when one of them never resets (`total`).
 */
function budgetError(outcomes: readonly PolicyOutcome[], top: PolicyOutcome): ApiError {
  const refusing = outcomes.filter((o) => !o.admitted);
  const never = refusing.some((o) => o.policy.unit === 'micro_usd' && o.policy.windowMs === 0);
  const wait = never ? null : retryAfterSeconds(refusing);
  const p = top.policy;
  const who =
    { key: 'API key', user: 'user', team: 'team' }[p.subject.slice(0, p.subject.indexOf(':'))] ?? p.subject;
  const usd = (micros: number): string => `$${(micros / 1_000_000).toFixed(6).replace(/\.?0+$/, '')}`;
  const headers: Record<string, string> = wait === null ? {} : { 'retry-after': String(wait) };
  return new ApiError(
    HttpStatus.TOO_MANY_REQUESTS,
    'rate_limit_error',
    'budget_exceeded',
    `Budget exceeded for the ${who} (${p.period ?? ''} budget ${usd(p.limit)}, ${usd(top.current)} spent or reserved): ` +
      (wait === null ? 'the total budget never resets' : `resets in ${wait} s`),
    p.name,
    headers,
  );
}

/** Redis ran the admission script after the decision's deadline: nothing was counted. */
class StaleDecisionError extends Error {}
