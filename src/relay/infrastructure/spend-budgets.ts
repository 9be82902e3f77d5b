import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { AlertsService } from '../../alerts/services/alerts.service.js';
import type { Principal, PrincipalBudget } from '../../common/principal.js';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { RateLimitService, type SpendSettlement, type Verdict } from '../../rate-limit/rate-limit.service.js';
import type { SpendReservation } from '../../rate-limit/rate-limit.types.js';
import { BudgetService, type TokenCounts } from '../../spend/services/budget.service.js';

/** One budgeted subject's counter as this request reserved on it. */
interface Counter {
  subject: string;
  key: string;
  /** The counter's reservations (a sorted set in its hash slot). */
  res: string;
  period: PrincipalBudget['period'];
  periodId: string;
  limitMicros: number;
  /** The counter (spent + reserved, this reservation included) as the admission step left it. */
  afterAdmission: number | null;
}

/**
 * A request's spend reservation, from its admission to its settlement (the answer's lease release,
 * or the relay's end for a request that never got an answer).
 */
export interface BudgetHold {
  counters: Counter[];
  /** The member its reservations carry (`<member>:<µ$>` in each counter's reservations). */
  member: string;
  /**
   * µ$ asked for on every counter. Kept when the admission step failed open: its answer may have
   * been lost after it ran (the settlement finds out: the reservation is there or it is not).
   */
  reserved: number;
  /** The admission step answered (before that, or when it threw, nothing is known to be reserved). */
  decided: boolean;
  settled: boolean;
  /** When its reservations were last renewed (or made), local ms. */
  renewedAt: number;
}

/**
 * Spend budgets on the relay's path (docs/spend.md "Budgets"): the worst-case reservation added to
 * the request's deferred client limits (decided in the same atomic step as the rate limits and the
 * key selection), kept alive while the request lives (renewed every third of
 * BUDGET_RESERVATION_TTL_MS: a reservation nobody renews — its instance died — is given back by the
 * next admission on its counter once its deadline passed), its settlement to the actual cost (riding
 * in the answer's lease release with the TPM charge: AnswerCharge; idempotent, so one whose answer
 * was lost is sent again once), and the `budget.threshold` alerts, raised after settlement.
 */
@Injectable()
export class SpendBudgets implements OnApplicationShutdown {
  private readonly logger = new Logger('SpendBudgets');
  private readonly holds = new WeakMap<object, BudgetHold>();
  /** Thresholds this instance already claimed (subject counter key + threshold). */
  private readonly claimed = new Set<string>();
  /** Holds whose reservations are outstanding: renewed until they settle. */
  private readonly live = new Set<BudgetHold>();
  private readonly ttlMs: number;
  private readonly renewEveryMs: number;
  private ticker: NodeJS.Timeout | null = null;
  private renewing = false;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly rules: BudgetService,
    private readonly rateLimit: RateLimitService,
    private readonly alerts: AlertsService,
  ) {
    this.ttlMs = config.budgets.reservationTtlMs;
    this.renewEveryMs = Math.max(100, Math.floor(this.ttlMs / 3));
  }

  onApplicationShutdown(): void {
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
  }

  /**
   * Before the first admission step: reserves the request's worst case on each budget of its key,
   * user and team (nothing when none has one). `targets`: where it may be served — the reservation
   * is priced at the dearest of them (a route's fallback may cost more than its first target).
   */
  reserve(
    request: FastifyRequest,
    body: unknown,
    targets: readonly { providerId: string; model: string }[],
  ): void {
    const subjects = budgetedSubjects(request.principal);
    if (subjects.length === 0) return;
    const length = Number(request.headers['content-length']);
    const bytes = Number.isFinite(length) && length > 0 ? length : (request.rawJson?.length ?? 0);
    const reserve = this.rules.worstCase(body, bytes, targets);
    const now = Date.now();
    const reservations: SpendReservation[] = subjects.map(([subject, b]) => ({
      subject,
      ...this.rules.period(b.period, now),
      limitMicros: b.limitMicros,
      reserveMicros: reserve,
      reservationTtlMs: this.ttlMs,
    }));
    const deferred = this.rateLimit.deferSpend(request, reservations);
    if (!deferred) return;
    this.holds.set(request, {
      counters: deferred.policies.map((p, i) => ({
        subject: p.subject,
        key: p.keys[0]!,
        res: p.keys[1]!,
        period: reservations[i]!.period as PrincipalBudget['period'],
        periodId: reservations[i]!.periodId,
        limitMicros: p.limit,
        afterAdmission: null,
      })),
      member: deferred.member,
      reserved: reserve,
      decided: false,
      settled: false,
      renewedAt: now,
    });
  }

  /**
   * After the first admission step: what it reserved. Refused (budget or rate limit) or shed →
   * nothing was reserved and nothing is to settle; failing open (store unavailable) → maybe nothing
   * reserved (the settlement adds the actual cost either way).
   */
  admitted(request: FastifyRequest, verdict: Verdict | null): void {
    const hold = this.holds.get(request);
    if (!hold) return;
    hold.decided = true;
    if (verdict?.error) {
      hold.settled = true;
      return;
    }
    if (!verdict) hold.reserved = 0;
    const decision = verdict?.decision;
    if (decision?.kind === 'admitted') {
      for (const c of hold.counters) {
        const o = decision.outcomes.find((x) => x.policy.keys[0] === c.key);
        c.afterAdmission = o ? o.current : null;
      }
    }
    if (hold.reserved > 0) this.keep(hold);
  }

  /** The request's hold (for the answer's lease: its release settles it). */
  holdOf(request: FastifyRequest): BudgetHold | null {
    const hold = this.holds.get(request);
    return hold && !hold.settled ? hold : null;
  }

  /**
   * Takes the hold's settlement for a release to carry (null: nothing to settle): the reservation
   * replaced by the actual cost on every counter, the actual cost priced as the request log prices
   * it (PriceService.costOf). Marks the hold settled: call `settled` with whether the store ran it.
   */
  settlement(
    hold: BudgetHold | null,
    providerId: string | null,
    model: string | null,
    usage: TokenCounts | null,
  ): { settlement: SpendSettlement; actual: number } | null {
    if (!hold || hold.settled) return null;
    hold.settled = true;
    this.live.delete(hold);
    // the admission step never answered (it threw): nothing reserved, nothing served
    if (!hold.decided) return null;
    const actual = this.rules.actualCost(providerId, model, usage);
    if (hold.reserved === 0 && actual === 0) return null;
    return {
      settlement: {
        counters: hold.counters.map((c) => ({ key: c.key, res: c.res })),
        member: hold.member,
        reserved: hold.reserved,
        actual,
        ttlMs: this.ttlMs,
      },
      actual,
    };
  }

  /**
   * After the release: `rode` (the settlement ran in the release's script), `alone` (it could not
   * ride — a Redis Cluster — and runs as its own step now) or `lost` (the release's answer was lost:
   * it may or may not have run — a settlement is idempotent, so it is sent again, once). Then raises
   * the thresholds the counter reached — judged on the counter the admission left plus this
   * settlement's change, each claimed once per subject, period and threshold across instances.
   */
  async settled(
    hold: BudgetHold,
    s: { settlement: SpendSettlement; actual: number },
    how: 'rode' | 'alone' | 'lost',
  ): Promise<void> {
    if (how !== 'rode' && !(await this.rateLimit.settleSpend(s.settlement))) return;
    const delta = this.rules.settlementDelta(hold.reserved, s.actual);
    for (const c of hold.counters) {
      if (c.afterAdmission === null) continue;
      const after = c.afterAdmission + delta;
      for (const t of this.rules.thresholds(after, c.limitMicros)) void this.announce(c, t, after);
    }
  }

  /** The end of a request that never settled (refused after admission, failed, never sent): all back. */
  async release(request: FastifyRequest): Promise<void> {
    const hold = this.holds.get(request);
    this.holds.delete(request);
    const s = this.settlement(hold ?? null, null, null, null);
    if (hold && s) await this.settled(hold, s, 'alone');
  }

  /** Outstanding reservations being renewed (tests, status). */
  get outstanding(): number {
    return this.live.size;
  }

  /** Renews the hold's reservations until it settles: one ticker for all, at a sixth of the TTL. */
  private keep(hold: BudgetHold): void {
    hold.renewedAt = Date.now();
    this.live.add(hold);
    if (this.ticker === null) {
      this.ticker = setInterval(() => void this.renewDue(), Math.max(50, Math.floor(this.renewEveryMs / 2)));
      this.ticker.unref();
    }
  }

  /**
   * Renews every hold last renewed a third of the TTL ago or more (one store step for all of them;
   * per counter on a Redis Cluster). A reservation found gone (its deadline passed before a renewal
   * got through — the store was out of reach — or the admission failed open): its request is no
   * longer counted until it
   * settles, when its actual cost is added. It is no longer renewed.
   */
  private async renewDue(): Promise<void> {
    if (this.live.size === 0) {
      if (this.ticker !== null) clearInterval(this.ticker);
      this.ticker = null;
      return;
    }
    if (this.renewing) return;
    this.renewing = true;
    try {
      const now = Date.now();
      const due = [...this.live].filter((h) => now - h.renewedAt >= this.renewEveryMs);
      if (due.length === 0) return;
      const entries = due.flatMap((h) =>
        h.counters.map((c) => ({ hold: h, res: c.res, member: `${h.member}:${h.reserved}` })),
      );
      const found = await this.rateLimit.renewSpend(entries, this.ttlMs);
      const answered = new Set<BudgetHold>();
      entries.forEach((e, i) => {
        if (found[i] === null) return;
        answered.add(e.hold);
        // gone (swept, or never made: the admission failed open) — nothing left to keep
        if (found[i] === false) this.live.delete(e.hold);
      });
      for (const h of answered) h.renewedAt = now;
    } finally {
      this.renewing = false;
    }
  }

  private async announce(c: Counter, threshold: number, usedMicros: number): Promise<void> {
    const claim = `${c.key}:${threshold}`;
    if (this.claimed.has(claim)) return;
    this.claimed.add(claim);
    if (this.claimed.size > 10_000) this.claimed.clear();
    const { resetMs } = this.rules.period(c.period, Date.now());
    // the claim lives as long as the period's counter (a total budget's for 400 days)
    const ttlMs = resetMs === 0 ? 400 * 86_400_000 : resetMs + 3_600_000;
    try {
      await this.alerts.emitOnce(
        'budget.threshold',
        `budget:${c.subject}:${c.periodId}:${threshold}`,
        ttlMs,
        {
          subject: c.subject.slice(0, c.subject.indexOf(':')),
          subject_id: c.subject.slice(c.subject.indexOf(':') + 1),
          period: c.period,
          period_id: c.periodId,
          threshold_percent: threshold,
          limit_usd: c.limitMicros / 1_000_000,
          spent_usd: usedMicros / 1_000_000,
        },
      );
    } catch (err) {
      this.logger.warn(`budget threshold alert failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

/** The principal's budgeted subjects: its API key's, its user's, its team's. */
function budgetedSubjects(p: Principal | undefined): [string, PrincipalBudget][] {
  if (!p) return [];
  const out: [string, PrincipalBudget][] = [];
  if (p.apiKeyId && p.apiKey?.budget) out.push([`key:${p.apiKeyId}`, p.apiKey.budget]);
  if (p.userBudget) out.push([`user:${p.userId}`, p.userBudget]);
  if (p.team?.budget) out.push([`team:${p.team.id}`, p.team.budget]);
  return out;
}
