import { Controller, Delete, Get, HttpCode, Param, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiNoContentResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiServiceUnavailableResponse,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { DataSource } from 'typeorm';
import { AuditService } from '../audit/audit.service.js';
import { ErrorResponseDto } from '../common/error.dto.js';
import { RequirePermission } from '../common/permissions.js';
import { BUDGET_STATE_EXAMPLE, BudgetStateDto } from './dto/budget-state.dto.js';
import { BudgetAdminService } from './services/budget-admin.service.js';

const SUBJECT_PARAM = {
  name: 'subject',
  description: '`key:{api_key_id}`, `user:{user_id}` or `team:{team_id}` (uuids)',
  examples: {
    key: { value: 'key:7d1f6c2e-3c4b-4e0a-9a51-2b8f1c0e6d42' },
    user: { value: 'user:0b8e7a52-6f0c-4a55-b5a4-1c0d6d1e2f3a' },
    team: { value: 'team:3f6d2a1b-8c4e-4b7a-9e21-5d0c7f1a2b3c' },
  },
};

const BAD_SUBJECT = {
  description: 'Malformed subject (`error.param` is `subject`)',
  type: ErrorResponseDto,
  schema: {
    example: {
      error: {
        type: 'invalid_request_error',
        code: 'invalid_subject',
        message: 'subject must be key:{api_key_id}, user:{user_id} or team:{team_id} (uuids)',
        param: 'subject',
        request_id: '5d0f3c7e-8a41-4f0e-9c1a-2b7d6e5f4a3c',
      },
    },
  },
};

const STORE_DOWN = {
  description: 'The client-limit store (Redis) cannot answer',
  type: ErrorResponseDto,
};

@ApiTags('admin: budgets')
@Controller('api/admin/budgets')
export class BudgetsController {
  constructor(
    private readonly budgets: BudgetAdminService,
    private readonly audit: AuditService,
    private readonly dataSource: DataSource,
  ) {}

  @Get(':subject')
  @RequirePermission('rate_limits', 'read')
  @ApiOperation({
    summary: "A subject's spend budget and its current period's counter",
    description:
      'The budget of an API key, a user or a team (docs/spend.md, Budgets) and its counter for the current period, shared by every instance: `spent_usd` (settled: the counter minus the outstanding reservations), `reserved_usd` and `reservations` (requests in flight, each holding its worst-case cost until it settles; a reservation whose instance died is given back once its deadline — BUDGET_RESERVATION_TTL_MS after its last renewal — has passed, which this read applies first), `remaining_usd` (what new requests may still reserve). Admins only.',
  })
  @ApiParam(SUBJECT_PARAM)
  @ApiOkResponse({ type: BudgetStateDto, schema: { example: BUDGET_STATE_EXAMPLE } })
  @ApiBadRequestResponse(BAD_SUBJECT)
  @ApiNotFoundResponse({
    description:
      'No such API key, user or team (`api_key_not_found`, `user_not_found`, `team_not_found`), or it has no budget (`budget_not_found`)',
    type: ErrorResponseDto,
  })
  @ApiServiceUnavailableResponse(STORE_DOWN)
  get(@Param('subject') subject: string): Promise<BudgetStateDto> {
    return this.budgets.inspect(subject);
  }

  @Delete(':subject')
  @HttpCode(204)
  @RequirePermission('rate_limits', 'write')
  @ApiOperation({
    summary: "Reset a subject's budget counters",
    description:
      "Forgets the subject's spend this period — the current counter of every period (day, week, month, total) and its outstanding reservations — on every instance at once. Requests in flight then settle without counting (their counter is gone). Works whether or not the subject has a budget now. Idempotent; audited as budget.reset. Admins only.",
  })
  @ApiParam(SUBJECT_PARAM)
  @ApiNoContentResponse({ description: 'Reset' })
  @ApiBadRequestResponse(BAD_SUBJECT)
  @ApiNotFoundResponse({ description: 'No such API key, user or team', type: ErrorResponseDto })
  @ApiServiceUnavailableResponse(STORE_DOWN)
  async reset(@Param('subject') subject: string, @Req() request: FastifyRequest): Promise<void> {
    const { subject: parsed, periodIds } = await this.budgets.resolveForReset(subject);
    // The audit row first, the reset (in Redis) inside its transaction: a refused row resets
    // nothing, a failed reset leaves no row.
    await this.dataSource.transaction(async (m) => {
      await this.audit.record(m, request, {
        action: 'budget.reset',
        targetType: 'budget_subject',
        targetId: parsed.text,
        changes: { subject: parsed.text, period_ids: periodIds },
      });
      await this.budgets.reset(parsed, periodIds);
    });
  }
}
