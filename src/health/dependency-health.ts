import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { DataSource } from 'typeorm';
import { DATABASE_INFO, type DatabaseInfo } from '../database/database.module.js';
import { REDIS, RedisConnections } from '../redis/redis.module.js';
import { GuardedProbe } from './probe.js';
import { ReadinessState } from './readiness.state.js';

const PING_TIMEOUT_MS = 1000;

@Injectable()
export class DependencyHealth {
  private readonly database: GuardedProbe;
  private readonly redisProbe: GuardedProbe | undefined;

  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly readiness: ReadinessState,
    dataSource: DataSource,
    @Inject(DATABASE_INFO) private readonly databaseInfo: DatabaseInfo,
    @Inject(REDIS) redis: RedisConnections | null,
  ) {
    this.database = new GuardedProbe(() => dataSource.query('SELECT 1'), PING_TIMEOUT_MS);
    // Every master (one Redis: the command connection): a cluster with one master down cannot
    // serve that master's slots.
    this.redisProbe = redis ? new GuardedProbe(() => redis.pingMasters(), PING_TIMEOUT_MS) : undefined;
  }

  get hasRedis(): boolean {
    return this.redisProbe !== undefined;
  }

  process(): HealthIndicatorResult {
    return this.indicators.check('process').up({
      uptime_seconds: Math.round(process.uptime()),
      rss_bytes: process.memoryUsage.rss(),
    });
  }

  accepting(): HealthIndicatorResult {
    const check = this.indicators.check('lifecycle');
    return this.readiness.isDraining ? check.down({ message: 'shutting down' }) : check.up();
  }

  /**
   * An unreachable external Postgres is reported but does not fail readiness: the instance still
   * relays for callers it verified recently (cached credentials, providers and keys; limits and
   * leases live in Redis) and buffers its accounting until Postgres returns. Every replica shares
   * that Postgres, so a 503 here would make Kubernetes remove ALL of them from the Service and turn
   * a degraded gateway into a total outage, with no healthier replica to send traffic to. The
   * check is `degraded` (terminus: HTTP 200, overall status "degraded") with `reachable: false`.
   * Embedded PGlite lives in the process: if it cannot answer, the instance is broken → `down`, 503.
   */
  async postgres(): Promise<HealthIndicatorResult> {
    const result = await this.database.run();
    const check = this.indicators.check('database');
    const details = { kind: this.databaseInfo.kind, latency_ms: result.latencyMs };
    if (result.ok) return check.up({ ...details, reachable: true });
    if (this.databaseInfo.kind === 'postgres') {
      return check.degraded({
        ...details,
        reachable: false,
        message: `Postgres unreachable (${result.message}): relaying continues for recently verified callers and accounting is buffered; admin routes and unknown credentials answer 503`,
      });
    }
    return check.down({ ...details, reachable: false, message: result.message });
  }

  async redis(): Promise<HealthIndicatorResult> {
    const check = this.indicators.check('redis');
    if (!this.redisProbe) return check.up({ kind: 'in-process' });
    const result = await this.redisProbe.run();
    return result.ok
      ? check.up({ latency_ms: result.latencyMs })
      : check.down({ latency_ms: result.latencyMs, message: result.message });
  }
}
