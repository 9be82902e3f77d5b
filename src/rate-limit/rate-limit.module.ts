import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule, type ThrottlerModuleOptions } from '@nestjs/throttler';
import { AuditModule } from '../audit/audit.module.js';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { AuthFailureLimiter } from './auth-failure.limiter.js';
import { MINUTE_MS } from './policies.js';
import { RateLimitCoreModule } from './rate-limit-core.module.js';
import { RateLimitController } from './rate-limit.controller.js';
import { RateLimitGuard } from './rate-limit.guard.js';
import { RateLimitStorage } from './rate-limit.storage.js';

/**
 * Rate limiting (docs/rate-limit.md): per API key, per user, per client IP and per route, exact
 * across instances. Registers THE rate-limit guard globally — import this module AFTER AuthModule
 * in app.module.ts so it runs after authentication. Exports RateLimitService (chargeTokens, stats)
 * and ClientIpService.
 */
@Module({
  imports: [
    RateLimitCoreModule,
    AuditModule,
    ThrottlerModule.forRootAsync({
      imports: [RateLimitCoreModule],
      inject: [APP_CONFIG, RateLimitStorage],
      // The throttler's named throttlers mirror our builtin policies (their names are what
      // @SkipThrottle({...}) / @Throttle({...}) address); the guard evaluates them all at once.
      useFactory: (config: AppConfig, storage: RateLimitStorage): ThrottlerModuleOptions => ({
        throttlers: [
          { name: 'key', limit: config.rateLimit.keyRpm, ttl: MINUTE_MS },
          { name: 'user', limit: config.rateLimit.userRpm, ttl: MINUTE_MS },
          { name: 'ip', limit: config.rateLimit.ipRpm, ttl: MINUTE_MS },
        ],
        storage,
      }),
    }),
  ],
  controllers: [RateLimitController],
  providers: [{ provide: APP_GUARD, useClass: RateLimitGuard }, AuthFailureLimiter],
  exports: [RateLimitCoreModule],
})
export class RateLimitModule {}
