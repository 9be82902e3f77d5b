import { Body, Controller, Delete, Get, Param, Patch, Query, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { ErrorResponseDto } from '../common/error.dto.js';
import { RequirePermission } from '../common/permissions.js';
import { AdaptiveAdminService } from './services/adaptive-admin.service.js';
import {
  AdaptiveKeyListItemDto,
  AdaptiveStatsDto,
  AdaptiveSummaryDto,
  ListAdaptiveKeysQueryDto,
  ResetLearningResponseDto,
  SetLimitQueryDto,
  SetLimitResponseDto,
  ToggleModeDto,
  ToggleModeResponseDto,
} from './dto/adaptive.dto.js';

const ID = {
  name: 'id',
  description: 'Upstream key id (uuid)',
  example: '5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f',
};
const NOT_FOUND = { description: 'Key not found', type: ErrorResponseDto };

/**
 * Adaptive concurrency admin API (seed 001; `provider_id` replaces `endpoint_id`). The mode is the
 * key's `max_concurrent`: null = adaptive (the limit is learned), a number = fixed (never adjusted).
 */
@ApiTags('adaptive')
@Controller('api/admin/adaptive')
export class AdaptiveController {
  constructor(private readonly admin: AdaptiveAdminService) {}

  @Get('keys')
  @RequirePermission('adaptive', 'read')
  @ApiOperation({
    summary: 'List adaptive keys',
    description:
      'Upstream keys in adaptive mode (max_concurrent = null), optionally of one provider, with their learned limit and 429 counts.',
  })
  @ApiOkResponse({ type: [AdaptiveKeyListItemDto] })
  @ApiBadRequestResponse({ description: 'provider_id is not a uuid', type: ErrorResponseDto })
  list(@Query() query: ListAdaptiveKeysQueryDto): Promise<AdaptiveKeyListItemDto[]> {
    return this.admin.listKeys(query.provider_id);
  }

  @Patch('keys/:id/mode')
  @RequirePermission('adaptive', 'write')
  @ApiOperation({
    summary: "Toggle a key's concurrency mode",
    description:
      '`enabled: true` → adaptive (max_concurrent = null; the learned value, if any, applies again); `enabled: false` → fixed at `fixed_limit` (1-100, required). Audited.',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: ToggleModeResponseDto })
  @ApiBadRequestResponse({
    description: 'enabled missing, fixed_limit missing with enabled false, or out of 1-100',
    type: ErrorResponseDto,
  })
  @ApiNotFoundResponse(NOT_FOUND)
  mode(
    @Param('id') id: string,
    @Body() dto: ToggleModeDto,
    @Req() req: FastifyRequest,
  ): Promise<ToggleModeResponseDto> {
    return this.admin.setMode(id, dto, req);
  }

  @Get('keys/:id/stats')
  @RequirePermission('adaptive', 'read')
  @ApiOperation({
    summary: "A key's adaptive statistics",
    description:
      'Mode, configured / effective / learned limit, 429 counts by kind, the last 429 and the adjustment history (newest first, at most 20).',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: AdaptiveStatsDto })
  @ApiNotFoundResponse(NOT_FOUND)
  stats(@Param('id') id: string): Promise<AdaptiveStatsDto> {
    return this.admin.stats(id);
  }

  @Delete('keys/:id/learning')
  @RequirePermission('adaptive', 'write')
  @ApiOperation({
    summary: "Reset a key's learning",
    description:
      'Clears the learned limit, the 429 counters and the adjustment history on every instance; the mode (max_concurrent) is unchanged. Audited.',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: ResetLearningResponseDto })
  @ApiNotFoundResponse(NOT_FOUND)
  reset(@Param('id') id: string, @Req() req: FastifyRequest): Promise<ResetLearningResponseDto> {
    return this.admin.resetLearning(id, req);
  }

  @Patch('keys/:id/limit')
  @RequirePermission('adaptive', 'write')
  @ApiOperation({
    summary: 'Set a fixed concurrency limit',
    description:
      'Switches the key to fixed mode with `limit` (1-100); it is never adjusted. Use PATCH /keys/{id}/mode to go back to adaptive. Audited.',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: SetLimitResponseDto })
  @ApiBadRequestResponse({ description: 'limit missing or not an integer 1-100', type: ErrorResponseDto })
  @ApiNotFoundResponse(NOT_FOUND)
  limit(
    @Param('id') id: string,
    @Query() query: SetLimitQueryDto,
    @Req() req: FastifyRequest,
  ): Promise<SetLimitResponseDto> {
    return this.admin.setFixedLimit(id, query.limit, req);
  }

  @Get('summary')
  @RequirePermission('adaptive', 'read')
  @ApiOperation({
    summary: 'Adaptive summary',
    description:
      'Totals over adaptive keys (keys, concurrency 429s, RPM/TPM 429s, adjustments) and the 10 most recent adjustments.',
  })
  @ApiOkResponse({ type: AdaptiveSummaryDto })
  summary(): Promise<AdaptiveSummaryDto> {
    return this.admin.summary();
  }
}
