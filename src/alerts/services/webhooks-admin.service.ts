import { Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { AuditService } from '../../audit/audit.service.js';
import { ApiError } from '../../common/api-error.js';
import { SecretSealerService } from '../../key-pool/services/secret-sealer.service.js';
import {
  judgeAddress,
  systemResolver,
  UpstreamGuardService,
  type Resolver,
} from '../../key-pool/services/upstream-guard.service.js';
import {
  checkEvents,
  checkWebhookUrlShape,
  generateSecret,
  secretHint,
  webhookSecretAad,
} from '../domain/events.js';
import type {
  CreatedWebhookDto,
  CreateWebhookDto,
  DeliveryQueryDto,
  WebhookDeliveryDto,
  WebhookDeliveryListDto,
  WebhookDto,
} from '../dto/webhook.dto.js';
import { DeliveryRepository, type DeliveryRow } from '../infrastructure/delivery.repository.js';
import type { Webhook } from '../infrastructure/webhook.entity.js';
import { WebhookRepository } from '../infrastructure/webhook.repository.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function iso(d: Date | string | null): string | null {
  return d === null ? null : new Date(d).toISOString();
}

/** The webhooks admin API: validation (SSRF guard included), sealed secrets, audit, delivery log. */
@Injectable()
export class WebhooksAdminService {
  constructor(
    private readonly webhooks: WebhookRepository,
    private readonly deliveries: DeliveryRepository,
    private readonly guard: UpstreamGuardService,
    private readonly sealer: SecretSealerService,
    private readonly audit: AuditService,
  ) {}

  async list(): Promise<WebhookDto[]> {
    return (await this.webhooks.all()).map((w) => this.view(w));
  }

  async get(id: string): Promise<WebhookDto> {
    return this.view(await this.find(id));
  }

  async create(
    dto: CreateWebhookDto,
    request: FastifyRequest | null,
    resolve: Resolver = systemResolver,
  ): Promise<CreatedWebhookDto> {
    const url = await this.checkUrl(dto.url, resolve);
    const events = checkEvents(dto.events);
    if (!events.ok) throw ApiError.badRequest(events.message, 'events');
    const generated = dto.secret === undefined;
    const secret = dto.secret ?? generateSecret();
    const id = randomUUID();
    const sealed = this.sealer.seal(secret, webhookSecretAad(id));
    const webhook = this.webhooks.build({
      id,
      url,
      events: events.value,
      secretCiphertext: sealed.ciphertext,
      encryptionKeyId: sealed.keyId,
      secretHint: secretHint(secret),
      enabled: dto.enabled ?? true,
    });
    await this.webhooks.insertWithAudit(webhook, (m) =>
      this.audit.record(m, request, {
        action: 'webhook.create',
        targetType: 'webhook',
        targetId: id,
        changes: { url, events: events.value, enabled: webhook.enabled, secret_generated: generated },
      }),
    );
    const saved = await this.find(id);
    return generated ? { ...this.view(saved), secret } : this.view(saved);
  }

  async remove(id: string, request: FastifyRequest | null): Promise<void> {
    const w = await this.find(id);
    const deleted = await this.webhooks.deleteWithAudit(w.id, (m) =>
      this.audit.record(m, request, {
        action: 'webhook.delete',
        targetType: 'webhook',
        targetId: w.id,
        changes: { url: w.url, events: w.events },
      }),
    );
    if (!deleted) throw notFound(id);
  }

  async listDeliveries(id: string, query: DeliveryQueryDto): Promise<WebhookDeliveryListDto> {
    const w = await this.find(id);
    const limit = query.limit ?? 50;
    const before = query.cursor !== undefined ? decodeCursor(query.cursor) : null;
    const rows = await this.deliveries.ofWebhook(w.id, limit, before);
    const last = rows[rows.length - 1];
    return {
      data: rows.map(deliveryView),
      next_cursor: rows.length === limit && last ? encodeCursor(last) : null,
    };
  }

  private async find(id: string): Promise<Webhook> {
    const w = UUID.test(id) ? await this.webhooks.byId(id) : null;
    if (!w) throw notFound(id);
    return w;
  }

  /** Shape, then every address the host resolves to, judged like a provider's base_url. */
  private async checkUrl(raw: string, resolve: Resolver): Promise<string> {
    const shape = checkWebhookUrlShape(raw);
    if (!shape.ok) throw ApiError.badRequest(shape.message, 'url', 'webhook_url_invalid');
    const { url, host } = shape.value;
    let addresses: string[];
    if (isIP(host) !== 0) addresses = [host];
    else {
      addresses = await resolve(host).catch(() => []);
      if (addresses.length === 0)
        throw ApiError.badRequest(`url host ${host} does not resolve`, 'url', 'webhook_url_unresolvable');
    }
    for (const a of addresses) {
      const verdict = judgeAddress(a, this.guard.allowPrivate);
      if (!verdict.allowed) {
        const via = a === host ? '' : ` (${host} resolves to it)`;
        throw ApiError.badRequest(`url is refused: ${verdict.reason}${via}`, 'url', 'webhook_url_forbidden');
      }
    }
    return url;
  }

  private view(w: Webhook): WebhookDto {
    return {
      id: w.id,
      url: w.url,
      events: w.events,
      enabled: w.enabled,
      secret_hint: w.secretHint,
      created_at: w.createdAt.toISOString(),
      updated_at: w.updatedAt.toISOString(),
    };
  }
}

function notFound(id: string): ApiError {
  return ApiError.notFound(`webhook ${id} not found`, 'webhook_not_found');
}

function deliveryView(r: DeliveryRow): WebhookDeliveryDto {
  return {
    id: r.id,
    event_id: r.event_id,
    event_type: r.event_type,
    status: r.status,
    attempt_count: Number(r.attempts),
    attempts: r.attempt_log,
    next_attempt_at: r.status === 'pending' ? iso(r.next_attempt_at) : null,
    last_http_status: r.last_http_status,
    last_error: r.last_error,
    created_at: iso(r.created_at)!,
    completed_at: iso(r.completed_at),
  };
}

function encodeCursor(r: DeliveryRow): string {
  return Buffer.from(`${r.created_us}.${r.id}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): { createdUs: string; id: string } {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const m = /^(\d{1,20})\.([0-9a-f-]{36})$/i.exec(text);
  if (!m || !UUID.test(m[2]!))
    throw ApiError.badRequest('cursor is not a next_cursor of this list', 'cursor');
  return { createdUs: m[1]!, id: m[2]! };
}
