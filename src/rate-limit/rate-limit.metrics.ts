import { Injectable, OnModuleInit } from '@nestjs/common';
import { Counter } from 'prom-client';
import { FloodgateMetrics } from '../metrics/floodgate-metrics.js';
import { RateLimitService } from './rate-limit.service.js';

/**
 * Publishes the limiter's decision counters as Prometheus counters at scrape time (the deltas since
 * the last scrape), so the decision path itself never touches prom-client — except the decision
 * latency histogram, observed through RateLimitService.onDecision.
 */
@Injectable()
export class RateLimitMetrics implements OnModuleInit {
  private readonly reported = new Map<string, number>();
  /** Redis Cluster only (the client limits as ordered per-subject steps): kept here, next to its source. */
  private readonly rollbacks: Counter<'result'>;

  constructor(
    private readonly limiter: RateLimitService,
    private readonly metrics: FloodgateMetrics,
  ) {
    this.rollbacks = new Counter({
      name: 'floodgate_rate_limit_rollbacks_total',
      help:
        'Redis Cluster: per-subject client-limit steps rolled back because a later subject refused or ' +
        'failed, by result (done; failed: the place stays taken until its window expires it)',
      labelNames: ['result'] as const,
      registers: [metrics.registry],
    });
  }

  onModuleInit(): void {
    this.metrics.onCollect(() => this.collect());
    this.limiter.onDecision = (ms, kind) =>
      this.metrics.hot.rateLimitDecisionSeconds.get1(kind).observe(ms / 1000);
  }

  private add(id: string, total: number, inc: (delta: number) => void): void {
    const delta = total - (this.reported.get(id) ?? 0);
    if (delta > 0) {
      inc(delta);
      this.reported.set(id, total);
    }
  }

  collect(): void {
    const stats = this.limiter.stats();
    for (const [policy, c] of Object.entries(stats.decisions)) {
      this.add(`${policy}:allowed`, c.allowed, (d) =>
        this.metrics.rateLimitDecisions.labels(policy, 'allowed').inc(d),
      );
      this.add(`${policy}:limited`, c.limited, (d) =>
        this.metrics.rateLimitDecisions.labels(policy, 'limited').inc(d),
      );
    }
    this.add('store_errors', stats.storeErrors, (d) =>
      this.metrics.rateLimitStoreErrors.labels(this.limiter.failureMode).inc(d),
    );
    this.add('rollbacks:done', stats.rollbacks - stats.rollbackFailures, (d) =>
      this.rollbacks.labels('done').inc(d),
    );
    this.add('rollbacks:failed', stats.rollbackFailures, (d) => this.rollbacks.labels('failed').inc(d));
    for (const [cause, total] of Object.entries(stats.unavailableByCause)) {
      this.add(`unavailable:${cause}`, total, (d) =>
        this.metrics.rateLimitUnavailable.labels(this.limiter.failureMode, cause).inc(d),
      );
    }
  }
}
