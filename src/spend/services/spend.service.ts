import { Injectable } from '@nestjs/common';
import { ApiError } from '../../common/api-error.js';
import type { Principal } from '../../common/principal.js';
import { microsToUsd } from '../domain/cost.js';
import {
  OWN_SPEND_GROUPS,
  parseSpendQuery,
  SPEND_GROUPS,
  type RawSpendQuery,
} from '../domain/spend-query.js';
import type { SpendResponseDto } from '../dto/spend.dto.js';
import { SpendRepository, type SpendRowRaw } from '../infrastructure/spend.repository.js';

/** The spend API: checked query → rollup sums → `{data: [...]}` (docs/spend.md). */
@Injectable()
export class SpendService {
  constructor(private readonly repository: SpendRepository) {}

  /** Everyone's spend (GET /api/admin/spend). */
  async all(raw: RawSpendQuery): Promise<SpendResponseDto> {
    const query = check(parseSpendQuery(raw, SPEND_GROUPS, Date.now()));
    return { data: (await this.repository.series(query)).map(view) };
  }

  /** The caller's own spend: every request made with their keys (GET /api/me/spend). */
  async own(principal: Principal, raw: RawSpendQuery): Promise<SpendResponseDto> {
    const query = check(parseSpendQuery(raw, OWN_SPEND_GROUPS, Date.now()));
    return { data: (await this.repository.series(query, principal.userId)).map(view) };
  }
}

function check(r: ReturnType<typeof parseSpendQuery>) {
  if (!r.ok) throw ApiError.badRequest(r.message, r.param);
  return r.query;
}

function view(r: SpendRowRaw) {
  return {
    group: r.grp,
    interval_start: new Date(r.interval_start).toISOString(),
    requests: Number(r.requests),
    prompt_tokens: Number(r.prompt_tokens),
    completion_tokens: Number(r.completion_tokens),
    cost_usd: microsToUsd(r.cost_micro_usd),
  };
}
