import { Inject, Injectable } from '@nestjs/common';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import {
  estimatePromptTokens,
  maxOutputTokens,
  periodBounds,
  periodId,
  reachedThresholds,
  settlementDelta,
  worstCaseMicros,
  type BudgetPeriod,
} from '../domain/budget.js';
import type { TokenCounts } from '../domain/cost.js';
import { PriceService } from './price.service.js';

export type { BudgetPeriod, TokenCounts };

/** A budget's counter for the period `nowMs` falls in (docs/spend.md "Budgets"). */
export interface BudgetPeriodView {
  period: BudgetPeriod;
  /** Part of the counter's key: a new period starts a new counter. */
  periodId: string;
  /** ms to the period's reset; 0 for `total` (never). */
  resetMs: number;
}

/**
 * The budget rules the relay applies (pure rules in domain/budget.ts, prices from PriceService — in
 * process, never Postgres): a request's worst-case reservation, its settlement, periods, thresholds.
 */
@Injectable()
export class BudgetService {
  private readonly defaultMaxTokens: number;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly prices: PriceService,
  ) {
    this.defaultMaxTokens = config.budgets.defaultMaxTokens;
  }

  /**
   * A request's worst case in µ$: its max output tokens (max_completion_tokens | max_tokens, else
   * BUDGET_DEFAULT_MAX_TOKENS) × the output price + its body bytes / 3 × the input price, at the
   * dearest of `targets` (0 when none has a known price).
   */
  worstCase(
    body: unknown,
    bodyBytes: number,
    targets: readonly { providerId: string; model: string }[],
  ): number {
    const prompt = estimatePromptTokens(bodyBytes);
    const output = maxOutputTokens(body, this.defaultMaxTokens);
    let worst = 0;
    for (const t of targets) {
      const price = this.prices.priceOf(t.providerId, t.model)?.price ?? null;
      worst = Math.max(worst, worstCaseMicros(price, prompt, output));
    }
    return worst;
  }

  /** The actual cost of an answer, as the request log prices it (0 when unpriced). */
  actualCost(providerId: string | null, model: string | null, usage: TokenCounts | null): number {
    return usage ? (this.prices.costOf(providerId, model, usage) ?? 0) : 0;
  }

  period(period: BudgetPeriod, nowMs: number): BudgetPeriodView {
    const { endMs } = periodBounds(period, nowMs);
    return { period, periodId: periodId(period, nowMs), resetMs: endMs === null ? 0 : endMs - nowMs };
  }

  settlementDelta(reservedMicros: number, actualMicros: number): number {
    return settlementDelta(reservedMicros, actualMicros);
  }

  thresholds(usedMicros: number, limitMicros: number): number[] {
    return reachedThresholds(usedMicros, limitMicros);
  }
}
