import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditModule } from '../audit/audit.module.js';
import { KeyPoolModule } from '../key-pool/key-pool.module.js';
import { StateModule } from '../state/state.module.js';
import { AdaptiveAdminService } from './services/adaptive-admin.service.js';
import { AdaptiveKeyState } from './infrastructure/adaptive-key-state.entity.js';
import { AdaptiveStateRepository } from './infrastructure/adaptive-state.repository.js';
import { AdaptiveController } from './adaptive.controller.js';
import { AdaptiveService } from './services/adaptive.service.js';

/**
 * Learned concurrency per upstream key (plugged into KeyPool's selection), the per-provider retreat
 * bucket (an admission gate the relay composes) and seed 001's admin API. See docs/adaptive.md.
 */
@Module({
  imports: [TypeOrmModule.forFeature([AdaptiveKeyState]), KeyPoolModule, StateModule, AuditModule],
  controllers: [AdaptiveController],
  providers: [AdaptiveStateRepository, AdaptiveService, AdaptiveAdminService],
  exports: [AdaptiveService],
})
export class AdaptiveModule {}
