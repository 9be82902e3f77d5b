import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module.js';
import { AuthModule } from '../auth/auth.module.js';
import { KeyPoolModule } from '../key-pool/key-pool.module.js';
import { RateLimitCoreModule } from '../rate-limit/rate-limit-core.module.js';
import { BudgetsController } from './budgets.controller.js';
import { SpendRepository } from './infrastructure/spend.repository.js';
import { BudgetAdminService } from './services/budget-admin.service.js';
import { BudgetService } from './services/budget.service.js';
import { PriceService } from './services/price.service.js';
import { SpendSummaryService } from './services/spend-summary.service.js';
import { SpendService } from './services/spend.service.js';
import { SpendSummaryController } from './spend-summary.controller.js';
import { AdminSpendController, OwnSpendController } from './spend.controller.js';

/**
 * Spend: prices (providers' `pricing` over the built-in catalog, cached in process: PriceService,
 * which the relay calls once per request to cost it) and the spend API over the hourly rollups the
 * request-log writer keeps (docs/spend.md), and the budgets' admin API (their counters live in the
 * client-limit store: RateLimitService). Relay and observability may import it; rate-limit,
 * key-pool and adaptive never do.
 */
@Module({
  imports: [KeyPoolModule, AuthModule, AuditModule, RateLimitCoreModule],
  controllers: [SpendSummaryController, AdminSpendController, OwnSpendController, BudgetsController],
  providers: [
    PriceService,
    BudgetService,
    BudgetAdminService,
    SpendService,
    SpendSummaryService,
    SpendRepository,
  ],
  exports: [PriceService, BudgetService],
})
export class SpendModule {}
