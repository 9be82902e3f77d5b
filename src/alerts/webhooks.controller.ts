import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiCreatedResponse,
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
  CreatedWebhookDto,
  CreateWebhookDto,
  DeliveryQueryDto,
  WebhookDeliveryListDto,
  WebhookDto,
} from './dto/webhook.dto.js';
import { WebhooksAdminService } from './services/webhooks-admin.service.js';

const ID = { name: 'id', description: 'Webhook id (uuid)', example: '5b0c1a8e-3f7d-4c1e-9a0b-1f2e3d4c5b6a' };

/**
 * Webhooks for alerts (docs/alerts.md). Admin only: a webhook URL and its signing secret are
 * credentials, like upstream keys (permission `provider_keys`).
 */
@ApiTags('webhooks')
@Controller('api/admin/webhooks')
export class WebhooksController {
  constructor(private readonly admin: WebhooksAdminService) {}

  @Get()
  @RequirePermission('provider_keys', 'read')
  @ApiOperation({
    summary: 'List webhooks',
    description: 'Every webhook with its events; the signing secret is never returned (secret_hint only).',
  })
  @ApiOkResponse({ type: [WebhookDto] })
  list(): Promise<WebhookDto[]> {
    return this.admin.list();
  }

  @Post()
  @RequirePermission('provider_keys', 'write')
  @ApiOperation({
    summary: 'Create a webhook',
    description:
      'Events are POSTed as `{id, type, created_at, data}` with `x-floodgate-signature: sha256=<hex HMAC-SHA256 of the raw body>`, `x-floodgate-event` and `x-floodgate-delivery`; non-2xx answers are retried with backoff. The URL passes the provider SSRF guard (here and on every connection). Without `secret`, one is generated and returned in this response only. Audited (never the secret).',
  })
  @ApiCreatedResponse({ type: CreatedWebhookDto })
  @ApiBadRequestResponse({
    description:
      'Validation failed; param names the field (url: webhook_url_invalid, webhook_url_forbidden, webhook_url_unresolvable; events: an unknown event)',
    type: ErrorResponseDto,
  })
  create(@Body() dto: CreateWebhookDto, @Req() req: FastifyRequest): Promise<CreatedWebhookDto> {
    return this.admin.create(dto, req);
  }

  @Get(':id')
  @RequirePermission('provider_keys', 'read')
  @ApiOperation({
    summary: 'Get a webhook',
    description: 'Its url, events and enabled flag; the signing secret is never returned (secret_hint only).',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: WebhookDto })
  @ApiNotFoundResponse({ description: 'No such webhook (webhook_not_found)', type: ErrorResponseDto })
  get(@Param('id') id: string): Promise<WebhookDto> {
    return this.admin.get(id);
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePermission('provider_keys', 'write')
  @ApiOperation({
    summary: 'Delete a webhook',
    description: 'Its pending deliveries are not sent and its delivery log goes with it. Audited.',
  })
  @ApiParam(ID)
  @ApiNoContentResponse({ description: 'Deleted' })
  @ApiNotFoundResponse({ description: 'No such webhook (webhook_not_found)', type: ErrorResponseDto })
  async remove(@Param('id') id: string, @Req() req: FastifyRequest): Promise<void> {
    await this.admin.remove(id, req);
  }

  @Get(':id/deliveries')
  @RequirePermission('provider_keys', 'read')
  @ApiOperation({
    summary: "A webhook's deliveries",
    description:
      'Newest first, each with its status (pending | delivered | failed), every attempt (HTTP status, error, duration) and the next attempt when pending. Page with `cursor` = next_cursor.',
  })
  @ApiParam(ID)
  @ApiOkResponse({ type: WebhookDeliveryListDto })
  @ApiBadRequestResponse({ description: 'Invalid limit or cursor', type: ErrorResponseDto })
  @ApiNotFoundResponse({ description: 'No such webhook (webhook_not_found)', type: ErrorResponseDto })
  deliveries(@Param('id') id: string, @Query() query: DeliveryQueryDto): Promise<WebhookDeliveryListDto> {
    return this.admin.listDeliveries(id, query);
  }
}
