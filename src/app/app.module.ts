import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_PIPE } from '@nestjs/core';
import { AdaptiveModule } from '../adaptive/adaptive.module.js';
import { AlertsModule } from '../alerts/alerts.module.js';
import { AuditModule } from '../audit/audit.module.js';
import { AuthModule } from '../auth/auth.module.js';
import { AllExceptionsFilter } from '../common/all-exceptions.filter.js';
import { createValidationPipe } from '../common/validation.js';
import type { AppConfig } from '../config/app-config.js';
import { ConfigModule } from '../config/config.module.js';
import { DatabaseModule } from '../database/database.module.js';
import { HealthModule } from '../health/health.module.js';
import { KeyPoolModule } from '../key-pool/key-pool.module.js';
import { LoggingModule } from '../logging/logging.module.js';
import { MetricsModule } from '../metrics/metrics.module.js';
import { ObservabilityModule } from '../observability/observability.module.js';
import { RateLimitModule } from '../rate-limit/rate-limit.module.js';
import { RelayModule } from '../relay/relay.module.js';
import { RequestsModule } from '../requests/requests.module.js';
import { RoutingModule } from '../routing/routing.module.js';
import { SpendModule } from '../spend/spend.module.js';
import { StateModule } from '../state/state.module.js';

/** The composition root: infrastructure first, then features. Feature modules are added here as they land. */
@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggingModule,
        MetricsModule,
        DatabaseModule,
        StateModule,
        HealthModule,
        // feature modules (one line each)
        AuthModule,
        RateLimitModule,
        AuditModule,
        KeyPoolModule,
        AdaptiveModule,
        RoutingModule,
        AlertsModule,
        SpendModule,
        RequestsModule,
        RelayModule,
        ObservabilityModule,
      ],
      providers: [
        { provide: APP_FILTER, useClass: AllExceptionsFilter },
        { provide: APP_PIPE, useFactory: createValidationPipe },
      ],
    };
  }
}
