import { Module } from '@nestjs/common';
import { ApiKeysService } from '../auth/api-keys.service.js';
import { AuthModule } from '../auth/auth.module.js';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { REDIS, type RedisConnections } from '../redis/redis.module.js';
import { AtomicStore, RedisAtomicStore } from '../state/atomic-store.js';
import { StateModule } from '../state/state.module.js';
import { ClientIpService } from './client-ip.service.js';
import { RateLimitStorage } from './rate-limit.storage.js';
import { RateLimitMetrics } from './rate-limit.metrics.js';
import { KeyLimitsLookup, RATE_LIMIT_STORE, RateLimitService } from './rate-limit.service.js';

/**
 * The limiter without its HTTP surface: the store, the service, client IP resolution and the
 * throttler storage. Separate from RateLimitModule only because ThrottlerModule.forRootAsync needs
 * the storage from an imported module.
 */
@Module({
  imports: [StateModule, AuthModule],
  providers: [
    {
      // Distributed: our own fail-fast connection (no offline queue: a disconnected Redis fails at
      // once). The decision itself gives up after RATE_LIMIT_TIMEOUT_MS (RateLimitService); the
      // connection's own command timeout is a looser backstop that bounds its queue while frozen.
      // Embedded: the shared in-process store.
      provide: RATE_LIMIT_STORE,
      inject: [REDIS, AtomicStore, APP_CONFIG],
      useFactory: (redis: RedisConnections | null, shared: AtomicStore, config: AppConfig): AtomicStore =>
        redis
          ? new RedisAtomicStore(
              redis.failFast('rate-limit', Math.max(1000, config.rateLimit.decisionTimeoutMs * 5)),
              redis.prefix,
            )
          : shared,
    },
    {
      provide: KeyLimitsLookup,
      inject: [ApiKeysService],
      useFactory: (keys: ApiKeysService): KeyLimitsLookup => ({
        find: async (id: string) => {
          const key = await keys.findById(id);
          return key ? { rpm: key.rpm, tpm: key.tpm } : null;
        },
      }),
    },
    ClientIpService,
    RateLimitService,
    RateLimitStorage,
    RateLimitMetrics,
  ],
  exports: [RateLimitService, ClientIpService, RateLimitStorage],
})
export class RateLimitCoreModule {}
