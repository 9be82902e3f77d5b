import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBody,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiForbiddenResponse,
  ApiNoContentResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { ApiError } from '../common/api-error.js';
import { CurrentPrincipal } from '../common/current-principal.decorator.js';
import { ErrorResponseDto } from '../common/error.dto.js';
import { RequirePermission } from '../common/permissions.js';
import type { Principal } from '../common/principal.js';
import { ApiKeysService } from './api-keys.service.js';
import {
  ApiKeyCreatedDto,
  ApiKeyDto,
  ApiKeyListDto,
  CreateApiKeyDto,
  ListOwnKeysQueryDto,
  toApiKeyDto,
  UPDATE_API_KEY_EXAMPLES,
  UpdateApiKeyDto,
} from './dto/api-key.dto.js';
import { KEY_PATCH_FIELDS, keyInputFrom, keyPatchFrom } from './key-input.js';
import { UsersService } from './users.service.js';

const OWN_KEYS_LIMIT = 1000;

@ApiTags('identity')
@Controller('api/keys')
export class KeysController {
  constructor(
    private readonly keys: ApiKeysService,
    private readonly users: UsersService,
  ) {}

  @Post()
  @RequirePermission('api_keys', 'write', 'own')
  @ApiOperation({
    summary: 'Create an API key for yourself',
    description:
      'The raw `key` is in this response only. Its role is at most yours; only admins grant max_priority urgent; a key creating a key cannot widen its own limits.',
  })
  @ApiCreatedResponse({ type: ApiKeyCreatedDto })
  @ApiBadRequestResponse({ description: 'Invalid body (unknown fields included)', type: ErrorResponseDto })
  async create(
    @Body() body: CreateApiKeyDto,
    @CurrentPrincipal() principal: Principal,
    @Req() request: FastifyRequest,
  ): Promise<ApiKeyCreatedDto> {
    const owner = await this.users.findById(principal.userId);
    if (!owner) throw ApiError.unauthorized('User no longer exists', 'user_not_found');
    const { key, raw } = await this.keys.create(owner, keyInputFrom(body), principal, request);
    return { ...toApiKeyDto(key), key: raw };
  }

  @Get()
  @RequirePermission('api_keys', 'read', 'own')
  @ApiOperation({
    summary: 'List your API keys',
    description: 'Newest first; revoked keys only with include_revoked=true.',
  })
  @ApiOkResponse({ type: ApiKeyListDto })
  @ApiBadRequestResponse({ description: 'Invalid query', type: ErrorResponseDto })
  async list(
    @Query() query: ListOwnKeysQueryDto,
    @CurrentPrincipal() principal: Principal,
  ): Promise<ApiKeyListDto> {
    const { keys, hasMore } = await this.keys.list({
      userId: principal.userId,
      includeRevoked: query.include_revoked ?? false,
      limit: OWN_KEYS_LIMIT,
      offset: 0,
    });
    return { data: keys.map(toApiKeyDto), has_more: hasMore };
  }

  @Patch(':id')
  @RequirePermission('api_keys', 'write', 'own')
  @ApiOperation({
    summary: 'Change one of your API keys',
    description:
      "The fields of PATCH /api/admin/api-keys/{id}, by the rules of creating a key for yourself: only admins grant max_priority urgent or change capture_bodies; calling with an API key, a change cannot go beyond that key's own settings (rpm, tpm, allowed_models, max_priority, and its budget's period and limit), so a key cannot raise itself. A key that is not yours answers 404, like a missing one. Takes effect at once on every instance. Audited as api_key.update.",
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
      'A change beyond what you may grant (`param` names the field: max_priority, capture_bodies, limits.rpm, limits.tpm, allowed_models)',
    type: ErrorResponseDto,
  })
  @ApiNotFoundResponse({ description: 'No such key among yours', type: ErrorResponseDto })
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
    return toApiKeyDto(await this.keys.update(id, patch, principal, request, { ownerId: principal.userId }));
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePermission('api_keys', 'write', 'own')
  @ApiOperation({
    summary: 'Revoke one of your API keys',
    description:
      'Takes effect on every instance within a second. Idempotent. A key that is not yours answers 404.',
  })
  @ApiParam({ name: 'id', format: 'uuid' })
  @ApiNoContentResponse({ description: 'Revoked' })
  @ApiNotFoundResponse({ description: 'No such key among yours', type: ErrorResponseDto })
  async revoke(
    @Param('id') id: string,
    @CurrentPrincipal() principal: Principal,
    @Req() request: FastifyRequest,
  ): Promise<void> {
    await this.keys.revoke(id, principal.userId, request);
  }
}
