import { Inject, Injectable } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ApiError } from '../../common/api-error.js';
import type { Priority } from '../../common/principal.js';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import type { KeyLease } from '../../key-pool/key-pool.types.js';
import { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';
import { AdmissionService } from '../admission.service.js';
import { RelayDispatcher } from '../dispatcher.js';
import {
  hopelessRefusal,
  passthroughTimeout,
  queuePlan,
  queueTimeout,
  refusalRejection,
  storeUnavailable,
} from '../domain/admission-rules.js';
import { PRIORITY_RANK } from '../domain/priority.js';
import { clientClosed } from '../domain/rejection.js';
import type { ClientGone } from './client-gone.js';
import { reject } from './reject.js';
import type { RoutableProvider } from './route.stage.js';

/** A lease to send with, or the answer instead; either way how long the request waited. */
export type Admitted = { lease: KeyLease; queueMs: number } | { error: ApiError; queueMs: number };

/**
 * Admission: straight upstream when the atomic admission step grants a key at once (no queue on the
 * uncontended path); otherwise the priority queue — or an answer at once when waiting can't help.
 */
@Injectable()
export class AdmitStage {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly admission: AdmissionService,
    private readonly dispatcher: RelayDispatcher,
    private readonly metrics: FloodgateMetrics,
  ) {}

  /**
   * `http`: the request and its reply — the request's client rate limits are decided in the first
   * admission step (same script as the lease), and their headers set on the reply here.
   */
  async admit(
    provider: RoutableProvider,
    priority: Priority,
    requestId: string,
    client: ClientGone,
    http: { request: FastifyRequest; reply: FastifyReply },
  ): Promise<Admitted> {
    const rank = PRIORITY_RANK[priority];
    const decided = await this.admission.first(http.request, provider.id, rank);
    if (decided.verdict) {
      const headers = decided.verdict.headers;
      for (const name in headers) void http.reply.header(name, headers[name]);
    }
    if (decided.result === null) throw decided.verdict.error;
    const first = decided.result;
    if (first.ok) {
      this.metrics.hot.queueWait.get2(provider.name, priority).observe(0);
      return { lease: first.lease, queueMs: 0 };
    }
    const timeoutMs = this.config.queue.timeoutMs[priority];
    const hopeless = hopelessRefusal(first.refusal, timeoutMs);
    if (hopeless) throw reject(hopeless);
    const depth = await this.dispatcher.depthWithin(provider.id, Math.min(timeoutMs, 1000));
    if (!depth) throw reject(storeUnavailable());
    const waiting = Object.values(depth).reduce((a, b) => a + b, 0);
    const plan = queuePlan(
      waiting,
      this.config.queue.maxPerProvider,
      this.config.queue.fullPolicy,
      provider.name,
    );
    if (plan.kind === 'reject') throw reject(plan.rejection);
    if (plan.kind === 'passthrough') {
      const started = Date.now();
      const lease = await this.passthrough(provider.id, rank, timeoutMs, client);
      const queueMs = Date.now() - started;
      this.metrics.hot.queueWait.get2(provider.name, priority).observe(queueMs / 1000);
      return { lease, queueMs };
    }
    const result = await this.dispatcher.wait(provider.id, rank, {
      requestId,
      timeoutMs,
      agingMs: this.config.queue.agingMs,
      signal: client.signal,
    });
    const queueMs = result.waitedMs;
    this.metrics.hot.queueWait.get2(provider.name, priority).observe(queueMs / 1000);
    switch (result.kind) {
      case 'granted':
        return { lease: result.lease, queueMs };
      case 'refused':
        return { error: reject(refusalRejection(result.refusal)), queueMs };
      case 'aborted':
        return { error: reject(clientClosed()), queueMs };
      case 'timeout':
        return { error: reject(queueTimeout(queueMs, provider.name, priority)), queueMs };
    }
  }

  /** For the one retry: another key that is free right now (the queue is not waited on again). */
  async another(providerId: string, priority: Priority, tried: readonly string[]): Promise<KeyLease | null> {
    const r = await this.admission.tryAcquire(providerId, PRIORITY_RANK[priority], true, tried);
    return r.ok ? r.lease : null;
  }

  /** Queue full under QUEUE_FULL_POLICY=passthrough: skip the queue, keep asking for admission until the timeout. */
  private async passthrough(
    providerId: string,
    rank: number,
    timeoutMs: number,
    client: ClientGone,
  ): Promise<KeyLease> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.admission.tryAcquire(providerId, rank, true);
      if (r.ok) return r.lease;
      if (r.refusal.kind === 'no_usable_keys') throw reject(refusalRejection(r.refusal));
      if (client.aborted) throw reject(clientClosed());
      if (Date.now() + Math.min(r.refusal.retryAfterMs, 50) > deadline)
        throw reject(passthroughTimeout(r.refusal.retryAfterMs));
      await new Promise((resolve) => setTimeout(resolve, Math.max(5, Math.min(r.refusal.retryAfterMs, 50))));
    }
  }
}
