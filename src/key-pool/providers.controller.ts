import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiExtraModels,
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
import { CreateProviderKeyDto, ProviderKeyDto } from './dto/provider-key.dto.js';
import { CreateProviderDto, ModelPriceDto, ProviderDto, UpdateProviderDto } from './dto/provider.dto.js';
import { KeyPoolAdminService } from './services/key-pool-admin.service.js';

const HEADERS_VISIBILITY =
  'Extra upstream `headers`: values in clear only for callers who may edit providers (`providers` write: admins); any other role (developer, viewer) gets each value as a preview like the `masked` of an upstream key (`…`, `…xy`, `org-…ijkl`) and `headers_redacted: true`.';
const ID = { name: 'id', description: 'Provider id (uuid)', example: '0b6f7a52-1d7e-4a8f-9a51-2b8f1c0e6d42' };

@ApiTags('providers')
@ApiExtraModels(ModelPriceDto)
@Controller('api/admin/providers')
export class ProvidersController {
  constructor(private readonly admin: KeyPoolAdminService) {}

  @Get()
  @RequirePermission('providers', 'read')
  @ApiOperation({
    summary: 'List providers',
    description: `Every provider with its key counts by state. ${HEADERS_VISIBILITY}`,
  })
  @ApiOkResponse({ type: [ProviderDto] })
  list(@Req() req: FastifyRequest): Promise<ProviderDto[]> {
    return this.admin.listProviders(KeyPoolAdminService.revealsHeaders(req));
  }

  @Post()
  @RequirePermission('providers', 'write')
  @ApiOperation({
    summary: 'Create a provider',
    description:
      'base_url must be http(s); every address its host resolves to is checked (link-local and cloud metadata always refused, private/loopback unless ALLOW_PRIVATE_UPSTREAMS). `pricing` (USD per million tokens per model id or pattern) prices its requests; models without an entry use the built-in catalog (docs/spend.md). `headers`: no credential headers, and no value containing `…` (a redacted preview: 400 `redacted_header_value`). Audited (header names only, never their values).',
  })
  @ApiCreatedResponse({ type: ProviderDto })
  @ApiBadRequestResponse({
    description: 'Validation failed (param names the field, e.g. base_url, pricing.gpt-4o.output_per_mtok)',
    type: ErrorResponseDto,
  })
  @ApiConflictResponse({
    description: 'A provider with this name exists (provider_name_taken)',
    type: ErrorResponseDto,
  })
  async create(@Body() dto: CreateProviderDto, @Req() req: FastifyRequest): Promise<ProviderDto> {
    const p = await this.admin.createProvider(dto, KeyPoolAdminService.api(req));
    return this.admin.providerView(p, [], KeyPoolAdminService.revealsHeaders(req));
  }

  @Get(':id')
  @RequirePermission('providers', 'read')
  @ApiOperation({ summary: 'Get a provider', description: HEADERS_VISIBILITY })
  @ApiParam(ID)
  @ApiOkResponse({ type: ProviderDto })
  @ApiNotFoundResponse({ description: 'No such provider', type: ErrorResponseDto })
  get(@Param('id') id: string, @Req() req: FastifyRequest): Promise<ProviderDto> {
    return this.admin.getProvider(id, KeyPoolAdminService.revealsHeaders(req));
  }

  @Patch(':id')
  @RequirePermission('providers', 'write')
  @ApiOperation({
    summary: 'Update a provider',
    description:
      'Only the given fields change; rpm/burst accept null (no limit). `headers` replaces the whole map (`{}` clears it; leave it out to keep the current headers); a value containing `…` is a redacted preview read back, never stored: the PATCH is refused (400 `redacted_header_value`, param `headers.<name>`) and nothing changes. Audited (header names only, never their values).',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: ProviderDto })
  @ApiBadRequestResponse({
    description: 'Validation failed (e.g. `redacted_header_value`: a header value is a redacted preview)',
    type: ErrorResponseDto,
  })
  @ApiNotFoundResponse({ description: 'No such provider', type: ErrorResponseDto })
  @ApiConflictResponse({ description: 'Another provider has this name', type: ErrorResponseDto })
  async update(
    @Param('id') id: string,
    @Body() dto: UpdateProviderDto,
    @Req() req: FastifyRequest,
  ): Promise<ProviderDto> {
    await this.admin.updateProvider(id, dto, KeyPoolAdminService.api(req));
    return this.admin.getProvider(id, KeyPoolAdminService.revealsHeaders(req));
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePermission('providers', 'write')
  @ApiOperation({ summary: 'Delete a provider and its keys', description: 'Audited.' })
  @ApiParam(ID)
  @ApiNoContentResponse({ description: 'Deleted' })
  @ApiNotFoundResponse({ description: 'No such provider', type: ErrorResponseDto })
  async remove(@Param('id') id: string, @Req() req: FastifyRequest): Promise<void> {
    await this.admin.deleteProvider(id, KeyPoolAdminService.api(req));
  }

  @Get(':id/keys')
  @RequirePermission('provider_keys', 'read')
  @ApiOperation({
    summary: "List a provider's upstream keys",
    description: 'Values are never returned: `masked` only. Includes the live 60 s window.',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: [ProviderKeyDto] })
  @ApiNotFoundResponse({ description: 'No such provider', type: ErrorResponseDto })
  listKeys(@Param('id') id: string): Promise<ProviderKeyDto[]> {
    return this.admin.listKeys(id);
  }

  @Post(':id/keys')
  @RequirePermission('provider_keys', 'write')
  @ApiOperation({
    summary: 'Add an upstream key',
    description: 'The value is encrypted (AES-256-GCM) before it is stored. Audited (never the value).',
  })
  @ApiParam(ID)
  @ApiCreatedResponse({ type: ProviderKeyDto })
  @ApiBadRequestResponse({ description: 'Validation failed', type: ErrorResponseDto })
  @ApiNotFoundResponse({ description: 'No such provider', type: ErrorResponseDto })
  @ApiConflictResponse({
    description: 'The provider already has a key with this label',
    type: ErrorResponseDto,
  })
  async addKey(
    @Param('id') id: string,
    @Body() dto: CreateProviderKeyDto,
    @Req() req: FastifyRequest,
  ): Promise<ProviderKeyDto> {
    const k = await this.admin.createKey(id, dto, KeyPoolAdminService.api(req));
    return this.admin.keyView(k, undefined);
  }
}
