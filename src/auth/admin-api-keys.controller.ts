import { Controller, Delete, Get, HttpCode, Param, Query, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiNoContentResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { ErrorResponseDto } from '../common/error.dto.js';
import { ApiError } from '../common/api-error.js';
import { CurrentPrincipal } from '../common/current-principal.decorator.js';
import { can, RequirePermission } from '../common/permissions.js';
import type { Principal } from '../common/principal.js';
import { ApiKeysService } from './api-keys.service.js';
import { ApiKeyListDto, ListApiKeysQueryDto, toApiKeyDto } from './dto/api-key.dto.js';

const ownTeamOnly = (action: string): ApiError =>
  ApiError.forbidden(`A team_admin may ${action} its own team's keys only`, 'insufficient_permission');

@ApiTags('admin: api keys')
@Controller('api/admin/api-keys')
export class AdminApiKeysController {
  constructor(private readonly keys: ApiKeysService) {}

  @Get()
  @RequirePermission('api_keys', 'read', 'team')
  @ApiOperation({
    summary: "List every user's API keys",
    description:
      "Newest first; filter by user_id or team_id; revoked keys only with include_revoked=true. A team_admin gets its own team's keys only (another team_id is a 403).",
  })
  @ApiOkResponse({ type: ApiKeyListDto })
  @ApiBadRequestResponse({ description: 'Invalid query', type: ErrorResponseDto })
  async list(
    @Query() query: ListApiKeysQueryDto,
    @CurrentPrincipal() principal: Principal,
  ): Promise<ApiKeyListDto> {
    let teamId = query.team_id?.toLowerCase();
    if (!can(principal.role, 'api_keys', 'read')) {
      if (teamId !== undefined && teamId !== principal.team?.id) throw ownTeamOnly('list');
      teamId = principal.team!.id;
    }
    const { keys, hasMore } = await this.keys.list({
      userId: query.user_id,
      teamId,
      includeRevoked: query.include_revoked ?? false,
      limit: query.limit ?? 100,
      offset: query.offset ?? 0,
    });
    return { data: keys.map(toApiKeyDto), has_more: hasMore };
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePermission('api_keys', 'write', 'team')
  @ApiOperation({
    summary: 'Revoke any API key',
    description:
      "Takes effect on every instance within a second. Idempotent. A team_admin may revoke its own team's keys only (403 for another team's).",
  })
  @ApiParam({ name: 'id', format: 'uuid' })
  @ApiNoContentResponse({ description: 'Revoked' })
  @ApiNotFoundResponse({ description: 'No such key', type: ErrorResponseDto })
  async revoke(
    @Param('id') id: string,
    @CurrentPrincipal() principal: Principal,
    @Req() request: FastifyRequest,
  ): Promise<void> {
    const teamOnly = can(principal.role, 'api_keys', 'write') ? null : principal.team!.id;
    await this.keys.revoke(id, null, request, teamOnly);
  }
}
