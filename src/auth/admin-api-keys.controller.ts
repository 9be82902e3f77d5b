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
import { RequirePermission } from '../common/permissions.js';
import { ApiKeysService } from './api-keys.service.js';
import { ApiKeyListDto, ListApiKeysQueryDto, toApiKeyDto } from './dto/api-key.dto.js';

@ApiTags('admin: api keys')
@Controller('api/admin/api-keys')
export class AdminApiKeysController {
  constructor(private readonly keys: ApiKeysService) {}

  @Get()
  @RequirePermission('api_keys', 'read')
  @ApiOperation({
    summary: "List every user's API keys",
    description: 'Newest first; filter by user_id; revoked keys only with include_revoked=true.',
  })
  @ApiOkResponse({ type: ApiKeyListDto })
  @ApiBadRequestResponse({ description: 'Invalid query', type: ErrorResponseDto })
  async list(@Query() query: ListApiKeysQueryDto): Promise<ApiKeyListDto> {
    const { keys, hasMore } = await this.keys.list({
      userId: query.user_id,
      includeRevoked: query.include_revoked ?? false,
      limit: query.limit ?? 100,
      offset: query.offset ?? 0,
    });
    return { data: keys.map(toApiKeyDto), has_more: hasMore };
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePermission('api_keys', 'write')
  @ApiOperation({
    summary: 'Revoke any API key',
    description: 'Takes effect on every instance within a second. Idempotent.',
  })
  @ApiParam({ name: 'id', format: 'uuid' })
  @ApiNoContentResponse({ description: 'Revoked' })
  @ApiNotFoundResponse({ description: 'No such key', type: ErrorResponseDto })
  async revoke(@Param('id') id: string, @Req() request: FastifyRequest): Promise<void> {
    await this.keys.revoke(id, null, request);
  }
}
