import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { DatabaseModule } from '../database/database.module.js';
import { RedisModule } from '../redis/redis.module.js';
import { DependencyHealth } from './dependency-health.js';
import { HealthController } from './health.controller.js';
import { ReadinessState } from './readiness.state.js';

@Module({
  imports: [TerminusModule.forRoot({ logger: false }), DatabaseModule, RedisModule],
  controllers: [HealthController],
  providers: [DependencyHealth, ReadinessState],
  exports: [ReadinessState],
})
export class HealthModule {}
