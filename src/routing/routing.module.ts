import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module.js';
import { KeyPoolModule } from '../key-pool/key-pool.module.js';
import { StateModule } from '../state/state.module.js';
import { BreakerService } from './services/breaker.service.js';
import { RoutesService } from './services/routes.service.js';

/**
 * Routing: model aliases with targets in tiers and weights (RoutesService, /api/admin/routes) and a
 * circuit breaker per target (BreakerService). Sits between Relay/Observability and KeyPool.
 */
@Module({
  imports: [KeyPoolModule, AuditModule, StateModule],
  providers: [RoutesService, BreakerService],
  exports: [RoutesService, BreakerService],
})
export class RoutingModule {}
