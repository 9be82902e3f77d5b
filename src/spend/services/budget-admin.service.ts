import { Injectable } from '@nestjs/common';
import { ApiKeysService } from '../../auth/api-keys.service.js';
import { TeamsService } from '../../auth/teams.service.js';
import { UsersService } from '../../auth/users.service.js';
import { ApiError } from '../../common/api-error.js';
import { RateLimitService } from '../../rate-limit/rate-limit.service.js';
import {
  currentPeriodIds,
  parseBudgetSubject,
  periodBounds,
  periodId,
  type BudgetPeriod,
  type BudgetSubject,
} from '../domain/budget.js';
import type { BudgetStateDto } from '../dto/budget-state.dto.js';

const usd = (micros: number): number => micros / 1_000_000;

/**
 * The budgets' admin API (docs/spend.md "Admin API"): a subject's budget with its current period's
 * counter (spent, reserved by requests in flight), and the reset of its counters. The counters live
 * in the client-limit store (RateLimitService); the budgets in Postgres (the auth module's services).
 */
@Injectable()
export class BudgetAdminService {
  constructor(
    private readonly keys: ApiKeysService,
    private readonly users: UsersService,
    private readonly teams: TeamsService,
    private readonly rateLimit: RateLimitService,
  ) {}

  /** 400 when malformed (`param` subject). */
  parse(text: string): BudgetSubject {
    const subject = parseBudgetSubject(text);
    if (!subject)
      throw ApiError.badRequest(
        'subject must be key:{api_key_id}, user:{user_id} or team:{team_id} (uuids)',
        'subject',
        'invalid_subject',
      );
    return subject;
  }

  /** The subject's budget (null: none); 404 when the subject does not exist. */
  private async budgetOf(
    subject: BudgetSubject,
  ): Promise<{ limitMicros: number; period: BudgetPeriod } | null> {
    const found =
      subject.kind === 'key'
        ? await this.keys.findById(subject.id)
        : subject.kind === 'user'
          ? await this.users.findById(subject.id)
          : await this.teams.findById(subject.id);
    if (!found) {
      const [what, code] = {
        key: ['API key', 'api_key_not_found'],
        user: ['user', 'user_not_found'],
        team: ['team', 'team_not_found'],
      }[subject.kind];
      throw ApiError.notFound(`No ${what} with id ${subject.id}`, code, 'subject');
    }
    if (found.budgetLimitMicros === null || found.budgetPeriod === null) return null;
    return { limitMicros: Number(found.budgetLimitMicros), period: found.budgetPeriod };
  }

  async inspect(text: string): Promise<BudgetStateDto> {
    const subject = this.parse(text);
    const budget = await this.budgetOf(subject);
    if (!budget)
      throw ApiError.notFound(
        `The ${subject.kind === 'key' ? 'API key' : subject.kind} ${subject.id} has no budget`,
        'budget_not_found',
        'subject',
      );
    const now = Date.now();
    const id = periodId(budget.period, now);
    const { endMs } = periodBounds(budget.period, now);
    const state = await this.rateLimit.spendState(subject.text, id);
    const counter = state.counterMicros ?? 0;
    const spent = Math.max(0, counter - state.reservedMicros);
    return {
      subject: subject.text,
      limit_usd: usd(budget.limitMicros),
      period: budget.period,
      period_id: id,
      reset_at: endMs === null ? null : new Date(endMs).toISOString(),
      spent_usd: usd(spent),
      reserved_usd: usd(state.reservedMicros),
      remaining_usd: usd(Math.max(0, budget.limitMicros - counter)),
      reservations: state.reservations,
    };
  }

  /**
   * Clears the subject's current counters (every period's: a budget whose period was just changed
   * starts clean too) and their reservations. 404 when the subject does not exist. Returns the
   * normalised subject and the period ids cleared (for the audit row).
   */
  async resolveForReset(text: string): Promise<{ subject: BudgetSubject; periodIds: string[] }> {
    const subject = this.parse(text);
    await this.budgetOf(subject);
    return { subject, periodIds: currentPeriodIds(Date.now()) };
  }

  async reset(subject: BudgetSubject, periodIds: readonly string[]): Promise<void> {
    await this.rateLimit.resetSpend(subject.text, periodIds);
  }
}
