import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Query, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBody,
  ApiConflictResponse,
  ApiForbiddenResponse,
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
import {
  ApiKeyDto,
  ApiKeyListDto,
  ListApiKeysQueryDto,
  toApiKeyDto,
  UPDATE_API_KEY_EXAMPLES,
  UpdateApiKeyDto,
} from './dto/api-key.dto.js';
import { KEY_PATCH_FIELDS, keyPatchFrom } from './key-input.js';

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

  @Patch(':id')
  @RequirePermission('api_keys', 'write', 'team')
  @ApiOperation({
    summary: 'Change an API key',
    description:
      "Changes `name`, `limits` ({rpm, tpm}; merged: a member left out is unchanged, null clears it), `budget` ({limit_usd, period} or null), `allowed_models`, `max_priority`, `team_id` (must be the owner's team), `capture_bodies` (admins only) and `expires_at` (future, or null = never). Send at least one; anything else (`role`, `key`, `owner_id`…) is a 400 naming the field, validated exactly as at creation. The key's value and hash never change and never appear. Takes effect at once on every instance (the key's cached credentials are dropped here and through pub/sub on the others). Audited as api_key.update with from/to per changed field. A team_admin may change its own team's keys only (403 for another team's); only admins grant max_priority urgent.",
  })
  @ApiParam({ name: 'id', format: 'uuid' })
  @ApiBody({ type: UpdateApiKeyDto, examples: UPDATE_API_KEY_EXAMPLES })
  @ApiOkResponse({ type: ApiKeyDto, description: 'The key as it is now (without its value)' })
  @ApiBadRequestResponse({
    description: 'Invalid body (unknown fields included, `param` names the field), or no field sent',
    type: ErrorResponseDto,
  })
  @ApiForbiddenResponse({
    description:
      "Not an admin (nor the key's team_admin), another team's key, or max_priority urgent / capture_bodies by a non-admin",
    type: ErrorResponseDto,
  })
  @ApiNotFoundResponse({ description: 'No such key', type: ErrorResponseDto })
  @ApiConflictResponse({ description: 'The key is revoked (api_key_revoked)', type: ErrorResponseDto })
  async update(
    @Param('id') id: string,
    @Body() body: UpdateApiKeyDto,
    @CurrentPrincipal() principal: Principal,
    @Req() request: FastifyRequest,
  ): Promise<ApiKeyDto> {
    const patch = keyPatchFrom(body);
    if (Object.values(patch).every((v) => v === undefined))
      throw ApiError.badRequest(`Send at least one of ${KEY_PATCH_FIELDS}`);
    const teamOnly = can(principal.role, 'api_keys', 'write') ? null : principal.team!.id;
    return toApiKeyDto(await this.keys.update(id, patch, principal, request, { teamId: teamOnly }));
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
