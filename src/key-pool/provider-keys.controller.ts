import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiConflictResponse,
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
import {
  HealReportDto,
  KeyUsageDto,
  ProviderKeyDto,
  UpdateProviderKeyDto,
  UsageQueryDto,
} from './dto/provider-key.dto.js';
import { KeyPoolAdminService } from './services/key-pool-admin.service.js';

const ID = {
  name: 'id',
  description: 'Upstream key id (uuid)',
  example: '5d0f3c7e-7b1a-4f3e-9a51-2b8f1c0e6d42',
};

@ApiTags('providers')
@Controller('api/admin/provider-keys')
export class ProviderKeysController {
  constructor(private readonly admin: KeyPoolAdminService) {}

  @Post('heal')
  @HttpCode(200)
  @RequirePermission('provider_keys', 'write')
  @ApiOperation({
    summary: 'Re-encrypt every upstream key under the current encryption key now',
    description:
      'What every start does, on demand (key rotation: put the new key first in ENCRYPTION_KEYS, restart, call this, check `broken` is 0, then drop the old key). Batched, resumable, safe to repeat and to run on several instances. Audited (counts only).',
  })
  @ApiOkResponse({ type: HealReportDto })
  heal(@Req() req: FastifyRequest): Promise<HealReportDto> {
    return this.admin.heal(req);
  }

  @Get(':id')
  @RequirePermission('provider_keys', 'read')
  @ApiOperation({ summary: 'Get an upstream key', description: '`masked` only, never the value.' })
  @ApiParam(ID)
  @ApiOkResponse({ type: ProviderKeyDto })
  @ApiNotFoundResponse({ description: 'No such key', type: ErrorResponseDto })
  get(@Param('id') id: string): Promise<ProviderKeyDto> {
    return this.admin.getKey(id);
  }

  @Patch(':id')
  @RequirePermission('provider_keys', 'write')
  @ApiOperation({
    summary: 'Update an upstream key',
    description:
      '`enabled: true` also ends a running cooldown and clears `invalid`; a new `key` value is re-encrypted and clears `broken`. Audited (never the value).',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: ProviderKeyDto })
  @ApiBadRequestResponse({ description: 'Validation failed', type: ErrorResponseDto })
  @ApiNotFoundResponse({ description: 'No such key', type: ErrorResponseDto })
  @ApiConflictResponse({
    description: 'The provider already has a key with this label',
    type: ErrorResponseDto,
  })
  async update(
    @Param('id') id: string,
    @Body() dto: UpdateProviderKeyDto,
    @Req() req: FastifyRequest,
  ): Promise<ProviderKeyDto> {
    await this.admin.updateKey(id, dto, KeyPoolAdminService.api(req));
    return this.admin.getKey(id);
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePermission('provider_keys', 'write')
  @ApiOperation({ summary: 'Delete an upstream key', description: 'Audited.' })
  @ApiParam(ID)
  @ApiNoContentResponse({ description: 'Deleted' })
  @ApiNotFoundResponse({ description: 'No such key', type: ErrorResponseDto })
  async remove(@Param('id') id: string, @Req() req: FastifyRequest): Promise<void> {
    await this.admin.deleteKey(id, KeyPoolAdminService.api(req));
  }

  @Get(':id/usage')
  @RequirePermission('provider_keys', 'read')
  @ApiOperation({
    summary: 'Per-minute usage of an upstream key',
    description:
      'One bucket per UTC minute for the last `minutes` minutes (default 60, at most 10080 = the 7-day retention), plus the live 60 s window.',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: KeyUsageDto })
  @ApiBadRequestResponse({ description: 'minutes is not an integer 1-10080', type: ErrorResponseDto })
  @ApiNotFoundResponse({ description: 'No such key', type: ErrorResponseDto })
  usage(@Param('id') id: string, @Query() query: UsageQueryDto): Promise<KeyUsageDto> {
    return this.admin.usage(id, query.minutes ?? 60);
  }
}
