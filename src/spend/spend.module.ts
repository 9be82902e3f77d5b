import { Module } from '@nestjs/common';
import { KeyPoolModule } from '../key-pool/key-pool.module.js';
import { SpendRepository } from './infrastructure/spend.repository.js';
import { BudgetService } from './services/budget.service.js';
import { PriceService } from './services/price.service.js';
import { SpendSummaryService } from './services/spend-summary.service.js';
import { SpendService } from './services/spend.service.js';
import { SpendSummaryController } from './spend-summary.controller.js';
import { AdminSpendController, OwnSpendController } from './spend.controller.js';

/**
 * Spend: prices (providers' `pricing` over the built-in catalog, cached in process: PriceService,
 * which the relay calls once per request to cost it) and the spend API over the hourly rollups the
 * request-log writer keeps (docs/spend.md). Relay and observability may import it; rate-limit,
 * key-pool and adaptive never do.
 */
@Module({
  imports: [KeyPoolModule],
  controllers: [SpendSummaryController, AdminSpendController, OwnSpendController],
  providers: [PriceService, BudgetService, SpendService, SpendSummaryService, SpendRepository],
  exports: [PriceService, BudgetService],
})
export class SpendModule {}
