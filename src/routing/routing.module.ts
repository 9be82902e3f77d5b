import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditModule } from '../audit/audit.module.js';
import { KeyPoolModule } from '../key-pool/key-pool.module.js';
import { StateModule } from '../state/state.module.js';
import { Route } from './infrastructure/route.entity.js';
import { RouteRepository } from './infrastructure/route.repository.js';
import { RoutesController } from './routes.controller.js';
import { BreakerService } from './services/breaker.service.js';
import { RoutesBootstrap } from './services/routes.bootstrap.js';
import { RoutesService } from './services/routes.service.js';

/**
 * Routing: model aliases with targets in tiers and weights (RoutesService, /api/admin/routes) and a
 * circuit breaker per target (BreakerService). Sits between Relay/Observability and KeyPool.
 * See docs/routes.md.
 */
@Module({
  imports: [TypeOrmModule.forFeature([Route]), KeyPoolModule, AuditModule, StateModule],
  controllers: [RoutesController],
  providers: [RouteRepository, RoutesService, RoutesBootstrap, BreakerService],
  exports: [RoutesService, BreakerService],
})
export class RoutingModule {}
