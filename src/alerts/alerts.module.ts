import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditModule } from '../audit/audit.module.js';
import { KeyPoolModule } from '../key-pool/key-pool.module.js';
import { RoutingModule } from '../routing/routing.module.js';
import { StateModule } from '../state/state.module.js';
import { DeliveryRepository } from './infrastructure/delivery.repository.js';
import { Webhook } from './infrastructure/webhook.entity.js';
import { WebhookRepository } from './infrastructure/webhook.repository.js';
import { AlertSources } from './services/alert-sources.js';
import { AlertsService } from './services/alerts.service.js';
import { WebhookDispatcher } from './services/webhook-dispatcher.service.js';
import { WebhooksAdminService } from './services/webhooks-admin.service.js';
import { WebhooksBootstrap } from './services/webhooks.bootstrap.js';
import { WebhooksController } from './webhooks.controller.js';

/**
 * Alerts: signed webhooks (/api/admin/webhooks) for key cooldowns and refusals, breaker transitions
 * and budget thresholds; deliveries retried with backoff from a Postgres log. `AlertsService.emit`
 * is the entry point for other modules (Relay, Observability, the app). See docs/alerts.md.
 */
@Module({
  imports: [TypeOrmModule.forFeature([Webhook]), KeyPoolModule, RoutingModule, AuditModule, StateModule],
  controllers: [WebhooksController],
  providers: [
    WebhookRepository,
    DeliveryRepository,
    WebhooksAdminService,
    WebhookDispatcher,
    AlertsService,
    AlertSources,
    WebhooksBootstrap,
  ],
  exports: [AlertsService],
})
export class AlertsModule {}
