import { Injectable } from '@nestjs/common';
import type { Principal, Priority } from '../../common/principal.js';
import { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';
import type { CapturedBodies } from '../../requests/services/body-capture.service.js';
import { PriceService } from '../../spend/services/price.service.js';
import type { AttemptRecord } from '../domain/attempt.js';
import type { Endpoint } from '../domain/validation.js';
import type { StoredAttempt } from '../infrastructure/request-log.entity.js';
import { RequestLogWriter } from '../infrastructure/request-log.writer.js';

/** Everything known about a finished request: what the log row and the metrics say. */
export interface RequestRecord {
  endpoint: Endpoint;
  requestId: string;
  principal: Principal;
  model: string | null;
  priority: Priority;
  stream: boolean;
  provider: { id: string; name: string } | null;
  /** The model entry that routed it (the metrics label); 'unknown' before routing. */
  modelLabel: string;
  status: number;
  errorCode: string | null;
  outcome: string;
  promptTokens: number;
  completionTokens: number;
  /** Of promptTokens, those served from the upstream's prompt cache (absent: 0). */
  cachedPromptTokens?: number;
  /** The model the provider served (a route target's model); absent: `model`. Prices the request. */
  servedModel?: string | null;
  queueMs: number;
  upstreamMs: number;
  overheadMs: number;
  attempts: number;
  keyId: string | null;
  /** The route that served it (request_log.route_id); null or absent without a route. */
  routeId?: string | null;
  /** Every upstream attempt, oldest first (request_log.attempt_log); null or absent: none recorded. */
  attemptLog?: readonly AttemptRecord[] | null;
  /** Body capture was on (docs/requests.md): redacted and capped here, stored in the row's batch. */
  capture?: CapturedBodies | null;
}

/** The last stage: metrics, one request-log row (batched). Never blocks the answer. */
@Injectable()
export class AccountStage {
  constructor(
    private readonly metrics: FloodgateMetrics,
    private readonly requestLog: RequestLogWriter,
    private readonly prices: PriceService,
  ) {}

  account(r: RequestRecord): void {
    const providerName = r.provider?.name ?? 'none';
    const status = r.status === 0 ? 500 : r.status;
    const hot = this.metrics.hot;
    hot.relayRequests.get4(providerName, r.modelLabel, r.priority, r.outcome).inc();
    if (r.provider && r.attempts > 0) {
      hot.upstreamLatency.get2(providerName, r.modelLabel).observe(r.upstreamMs / 1000);
      hot.overhead.get1(r.endpoint).observe(r.overheadMs / 1000);
      if (r.promptTokens) hot.tokens.get3(providerName, r.modelLabel, 'prompt').inc(r.promptTokens);
      if (r.completionTokens)
        hot.tokens.get3(providerName, r.modelLabel, 'completion').inc(r.completionTokens);
    }
    // The client key's TPM window was charged by the answer's lease release (LeaseKeeper, AnswerCharge).
    // Cost: once, here, from what was counted (a cut-off stream too), at the served provider+model's
    // price (in-process cache: no Postgres read). The spend rollup is summed from these rows.
    const costMicroUsd = this.prices.costOf(r.provider?.id ?? null, r.servedModel ?? r.model, {
      promptTokens: r.promptTokens,
      cachedPromptTokens: r.cachedPromptTokens ?? 0,
      completionTokens: r.completionTokens,
    });
    this.requestLog.add({
      createdAt: new Date(),
      requestId: r.requestId,
      apiKeyId: r.principal.apiKeyId,
      userId: r.principal.userId,
      providerId: r.provider?.id ?? null,
      providerKeyId: r.keyId,
      endpoint: r.endpoint,
      model: r.model?.slice(0, 255) ?? null,
      priority: r.priority,
      status,
      errorCode: r.errorCode,
      promptTokens: r.promptTokens,
      completionTokens: r.completionTokens,
      queueMs: Math.round(r.queueMs),
      upstreamMs: Math.round(r.upstreamMs),
      overheadMs: Math.round(r.overheadMs),
      attempts: Math.max(1, r.attempts),
      stream: r.stream,
      routeId: r.routeId ?? null,
      attemptLog: r.attemptLog ? r.attemptLog.map(storedAttempt) : null,
      costMicroUsd,
      servedModel: r.servedModel ?? null,
      teamId: r.principal.team?.id ?? null,
      bodies: r.capture ? r.capture.finish() : null,
    });
  }
}

/** An attempt as the request log stores it (snake_case keys, whole milliseconds). */
function storedAttempt(a: AttemptRecord): StoredAttempt {
  return {
    attempt: a.attempt,
    provider_id: a.providerId,
    model: a.model,
    key_id: a.keyId,
    status: a.status,
    outcome: a.outcome,
    ms: Math.round(a.ms),
  };
}
