import { Module } from '@nestjs/common';
import { ApiKeysService } from '../auth/api-keys.service.js';
import { TeamsService } from '../auth/teams.service.js';
import { AuthModule } from '../auth/auth.module.js';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { LivenessSource } from '../redis/redis-liveness.js';
import { REDIS, type RedisConnections } from '../redis/redis.module.js';
import { AtomicStore, RedisAtomicStore } from '../state/atomic-store.js';
import { StateModule } from '../state/state.module.js';
import { ClientIpService } from './client-ip.service.js';
import { RateLimitStorage } from './rate-limit.storage.js';
import { RateLimitMetrics } from './rate-limit.metrics.js';
import {
  KeyLimitsLookup,
  RATE_LIMIT_LIVENESS,
  RATE_LIMIT_STORE,
  RateLimitService,
} from './rate-limit.service.js';

/** Distributed: the limiter's own Redis connection and the liveness that judges it; embedded: null. */
const RATE_LIMIT_CONNECTION = Symbol('RATE_LIMIT_CONNECTION');
type LimiterConnection = ReturnType<RedisConnections['watched']> | null;

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
      // once), judged by RedisLiveness: a decision gives up only when the connection is not ready or
      // Redis stays silent for RATE_LIMIT_TIMEOUT_MS — never because our own event loop was slow.
      provide: RATE_LIMIT_CONNECTION,
      inject: [REDIS, APP_CONFIG],
      useFactory: (redis: RedisConnections | null, config: AppConfig): LimiterConnection =>
        redis ? redis.watched('rate-limit', config.rateLimit.decisionTimeoutMs) : null,
    },
    {
      // Embedded: the shared in-process store.
      provide: RATE_LIMIT_STORE,
      inject: [REDIS, RATE_LIMIT_CONNECTION, AtomicStore],
      useFactory: (
        redis: RedisConnections | null,
        connection: LimiterConnection,
        shared: AtomicStore,
      ): AtomicStore =>
        redis && connection ? new RedisAtomicStore(connection.client, redis.prefix) : shared,
    },
    {
      provide: RATE_LIMIT_LIVENESS,
      inject: [RATE_LIMIT_CONNECTION],
      useFactory: (connection: LimiterConnection): LivenessSource | null => connection?.liveness ?? null,
    },
    {
      provide: KeyLimitsLookup,
      inject: [ApiKeysService, TeamsService],
      useFactory: (keys: ApiKeysService, teams: TeamsService): KeyLimitsLookup => ({
        find: async (id: string) => {
          const key = await keys.findById(id);
          return key ? { rpm: key.rpm, tpm: key.tpm } : null;
        },
        findTeam: async (id: string) => {
          const team = await teams.findById(id);
          return team ? { rpm: team.rpm, tpm: team.tpm } : null;
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
