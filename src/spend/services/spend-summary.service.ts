import { Injectable } from '@nestjs/common';
import { microsToUsd } from '../domain/cost.js';
import {
  summarize,
  utcDayStart,
  utcMonthStart,
  type PeriodTotals,
  type SpendSummary,
  type SummaryLine,
} from '../domain/spend-summary.js';
import type { SpendPeriodsDto, SpendSummaryDto } from '../dto/spend-summary.dto.js';
import { SpendRepository } from '../infrastructure/spend.repository.js';

/** How long one read of the rollups answers every caller on this instance. */
export const SPEND_SUMMARY_TTL_MS = 30_000;

/**
 * Today's and this month's spend per team and per model for the dashboard
 * (GET /api/admin/spend/summary). One rollup query per instance per 30 s at most, however many
 * dashboards are open: the answer is cached and concurrent callers share one read.
 */
@Injectable()
export class SpendSummaryService {
  private cached: { at: number; value: SpendSummaryDto } | null = null;
  private pending: Promise<SpendSummaryDto> | null = null;

  constructor(private readonly repository: SpendRepository) {}

  async summary(now = Date.now()): Promise<SpendSummaryDto> {
    const c = this.cached;
    if (c && now - c.at < SPEND_SUMMARY_TTL_MS && c.value.today_from === utcDayStart(now).toISOString())
      return c.value;
    if (!this.pending) {
      this.pending = this.read(now).finally(() => (this.pending = null));
    }
    return this.pending;
  }

  private async read(now: number): Promise<SpendSummaryDto> {
    const dayStart = utcDayStart(now);
    const monthStart = utcMonthStart(now);
    const rows = await this.repository.summaryRows(dayStart, monthStart);
    const value = view(summarize(rows, dayStart, monthStart), now);
    this.cached = { at: now, value };
    return value;
  }
}

const totals = (t: PeriodTotals) => ({ requests: t.requests, cost_usd: microsToUsd(t.micros) });
const periods = (l: SummaryLine): SpendPeriodsDto => ({ today: totals(l.today), month: totals(l.month) });

function view(s: SpendSummary, now: number): SpendSummaryDto {
  return {
    generated_at: new Date(now).toISOString(),
    today_from: s.dayStart.toISOString(),
    month_from: s.monthStart.toISOString(),
    total: periods(s.total),
    by_team: s.byTeam.map((t) => ({ team_id: t.teamId, team_name: t.teamName, ...periods(t) })),
    by_model: s.byModel.map((m) => ({ model: m.model, ...periods(m) })),
  };
}
