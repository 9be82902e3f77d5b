import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { SpendGroup, SpendQuery } from '../domain/spend-query.js';
import type { SummaryRow } from '../domain/spend-summary.js';

/** One group × interval of the spend API, as Postgres sums it (bigint sums as text). */
export interface SpendRowRaw {
  grp: string | null;
  interval_start: Date;
  requests: string;
  prompt_tokens: string;
  completion_tokens: string;
  cost_micro_usd: string;
}

/** The rollup column each group_by reads (a closed list: never user input in SQL). */
const GROUP_COLUMN: Record<SpendGroup, string> = {
  key: 'api_key_id::text',
  user: 'user_id::text',
  team: 'team_id::text',
  model: 'model',
  provider: 'provider_id::text',
};

/** Interval starts in UTC whatever the session's TimeZone. */
const BUCKET = {
  hour: 'hour',
  day: `(date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')`,
} as const;

/**
 * SQL for `spend_rollup` reads (the rollup is written by the relay's request-log writer, in the same
 * statement as the request-log rows it sums). Reads sum the hour buckets, never scan request_log.
 */
@Injectable()
export class SpendRepository {
  constructor(private readonly dataSource: DataSource) {}

  /** Totals per group and interval between `from` (inclusive) and `to` (exclusive); `userId` narrows to one user's spend. */
  async series(query: SpendQuery, userId: string | null = null): Promise<SpendRowRaw[]> {
    const params: unknown[] = [query.from, query.to];
    let where = 'hour >= $1 AND hour < $2';
    if (userId !== null) {
      params.push(userId);
      where += ` AND user_id = $${params.length}`;
    }
    return (await this.dataSource.query(
      `SELECT ${GROUP_COLUMN[query.groupBy]} AS grp, ${BUCKET[query.interval]} AS interval_start,
              sum(requests)::text AS requests, sum(prompt_tokens)::text AS prompt_tokens,
              sum(completion_tokens)::text AS completion_tokens, sum(cost_micro_usd)::text AS cost_micro_usd
         FROM spend_rollup
        WHERE ${where}
        GROUP BY 1, 2
        ORDER BY 2, 1 NULLS LAST`,
      params,
    )) as SpendRowRaw[];
  }

  /**
   * The dashboard's summary: per team × model since `monthStart`, with the part since `dayStart`
   * (both UTC bucket starts); the team's current name joined (null: no team, or deleted since).
   */
  async summaryRows(dayStart: Date, monthStart: Date): Promise<SummaryRow[]> {
    return (await this.dataSource.query(
      `SELECT r.team_id::text AS team_id, t.name AS team_name, r.model,
              (coalesce(sum(r.requests) FILTER (WHERE r.hour >= $1), 0))::text AS today_requests,
              (coalesce(sum(r.cost_micro_usd) FILTER (WHERE r.hour >= $1), 0))::text AS today_micros,
              sum(r.requests)::text AS month_requests, sum(r.cost_micro_usd)::text AS month_micros
         FROM spend_rollup r
         LEFT JOIN teams t ON t.id = r.team_id
        WHERE r.hour >= $2
        GROUP BY r.team_id, t.name, r.model`,
      [dayStart, monthStart],
    )) as SummaryRow[];
  }
}
