import { Inject, Injectable, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import { ApiError, type ErrorType } from '../common/api-error.js';
import { toErrorResponse, type ErrorResponse } from '../common/error-response.js';
import { unstorableReason } from '../common/input-safety.js';
import { PRIORITY_RANK, type Principal, type Priority } from '../common/principal.js';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { KeyLease, KeyOutcome, KeyRefusal } from '../key-pool/key-pool.types.js';
import { KeyPoolService } from '../key-pool/key-pool.service.js';
import { FloodgateMetrics } from '../metrics/floodgate-metrics.js';
import { RateLimitService } from '../rate-limit/rate-limit.service.js';
import { injectTraceContext, withSpan } from '../observability/tracing.js';
import { AdmissionService } from './admission.service.js';
import { RelayDispatcher } from './dispatcher.js';
import { clientResponseHeaders, upstreamRequestHeaders } from './headers.js';
import { modelAllowed, routeModel, type RoutableProvider as RoutableBase } from './model-router.js';
import { RequestLogWriter } from './request-log.writer.js';
import { SseRelay } from './sse-relay.js';
import { UpstreamClient, UpstreamError, classify } from './upstream-client.js';

export type Endpoint = 'chat' | 'completions' | 'embeddings';
const UPSTREAM_PATHS: Record<Endpoint, string> = {
  chat: '/chat/completions',
  completions: '/completions',
  embeddings: '/embeddings',
};
const KEEPALIVE_MS = 15_000;

interface Attempt {
  lease: KeyLease;
  response?: Dispatcher.ResponseData;
  error?: UpstreamError;
  startedAt: number;
}

/** What the relay hands the log and metrics once a request is over. */
interface Accounting {
  provider: RoutableProvider | null;
  modelLabel: string;
  model: string | null;
  priority: Priority;
  status: number;
  errorCode: string | null;
  outcome: string;
  promptTokens: number;
  completionTokens: number;
  queueMs: number;
  upstreamMs: number;
  overheadMs: number;
  attempts: number;
  stream: boolean;
  keyId: string | null;
  /** The lease of the current attempt (released on every path; see handle's finally). */
  lease: KeyLease | null;
}

function relayError(
  status: number,
  type: ErrorType,
  code: string,
  message: string,
  options: { retryAfterSeconds?: number; shouldRetry?: boolean; param?: string | null } = {},
): ApiError {
  const headers: Record<string, string> = {};
  if (options.retryAfterSeconds !== undefined)
    headers['retry-after'] = String(Math.max(1, Math.ceil(options.retryAfterSeconds)));
  if (options.shouldRetry !== undefined) headers['x-should-retry'] = String(options.shouldRetry);
  return new ApiError(status, type, code, message, options.param ?? null, headers);
}

/**
 * The hot path: receive → validate → route → priority → admission (one atomic step; queue only when
 * contended) → forward (undici, streaming passthrough) → answer → account (batched log, metrics, TPM).
 * A client request goes upstream at most twice.
 */
@Injectable()
export class RelayService {
  private readonly logger = new Logger('Relay');
  private readonly waitTimeoutMs: Record<Priority, number>;
  /** Leases are renewed three times per TTL while held. */
  private readonly renewEveryMs: number;
  private readonly renewals = new WeakMap<KeyLease, NodeJS.Timeout>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly keyPool: KeyPoolService,
    private readonly admission: AdmissionService,
    private readonly dispatcher: RelayDispatcher,
    private readonly upstream: UpstreamClient,
    private readonly requestLog: RequestLogWriter,
    private readonly metrics: FloodgateMetrics,
    private readonly rateLimit: RateLimitService,
  ) {
    this.renewEveryMs = Math.max(500, Math.floor((config.keyPool.leaseTtlSeconds * 1000) / 3));
    this.waitTimeoutMs = {
      urgent: config.queue.timeoutMs.urgent,
      high: config.queue.timeoutMs.high,
      normal: config.queue.timeoutMs.normal,
      low: config.queue.timeoutMs.low,
    };
  }

  // ---- models ------------------------------------------------------------------------------

  async listModels(principal: Principal): Promise<{ object: 'list'; data: ModelCard[] }> {
    const providers = await this.keyPool.routableProviders();
    const seen = new Set<string>();
    const data: ModelCard[] = [];
    for (const p of [...providers].sort((a, b) => a.name.localeCompare(b.name))) {
      for (const id of p.models) {
        if (id.includes('*') || seen.has(id) || !modelAllowed(id, principal.apiKey?.allowedModels ?? null))
          continue;
        seen.add(id);
        data.push({
          id,
          object: 'model',
          created: Math.floor(p.createdAt.getTime() / 1000),
          owned_by: p.name,
        });
      }
    }
    data.sort((a, b) => a.id.localeCompare(b.id));
    return { object: 'list', data };
  }

  async getModel(principal: Principal, id: string): Promise<ModelCard> {
    const providers = await this.keyPool.routableProviders();
    const route = routeModel(id, providers);
    if (!route || !modelAllowed(id, principal.apiKey?.allowedModels ?? null)) throw modelNotFound(id);
    return {
      id,
      object: 'model',
      created: Math.floor(route.provider.createdAt.getTime() / 1000),
      owned_by: route.provider.name,
    };
  }

  // ---- completions -----------------------------------------------------------------------------

  async handle(endpoint: Endpoint, request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const principal = request.principal!;
    const acct: Accounting = {
      provider: null,
      modelLabel: 'unknown',
      model: null,
      priority: 'normal',
      status: 0,
      errorCode: null,
      outcome: 'ok',
      promptTokens: 0,
      completionTokens: 0,
      queueMs: 0,
      upstreamMs: 0,
      overheadMs: 0,
      attempts: 0,
      stream: false,
      keyId: null,
      lease: null,
    };
    const abort = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) abort.abort();
    };
    reply.raw.on('close', onClose);
    try {
      await this.relay(endpoint, request, reply, principal, acct, abort.signal);
    } catch (err) {
      // The log and the metric say what the client is told: the same mapping the exception filter
      // answers with (a store outage is 503 dependency_unavailable there, so it is here too).
      const answer = toErrorResponse(err, String(request.id));
      acct.status = answer.status;
      acct.errorCode = answer.body.error.code;
      acct.outcome = outcomeOf(answer);
      if (abort.signal.aborted) {
        acct.status = 499;
        acct.outcome = 'canceled';
        if (!reply.sent) reply.raw.destroy();
        return;
      }
      throw err;
    } finally {
      reply.raw.off('close', onClose);
      // Any path that left a lease held (an unexpected throw) gives it back here.
      if (acct.lease && this.renewals.has(acct.lease))
        await this.release(acct.lease, { error: 'aborted' }).catch(() => undefined);
      this.account(endpoint, request, principal, acct);
    }
  }

  private async relay(
    endpoint: Endpoint,
    request: FastifyRequest,
    reply: FastifyReply,
    principal: Principal,
    acct: Accounting,
    signal: AbortSignal,
  ): Promise<void> {
    const body = validateBody(endpoint, request.body);
    acct.model = body.model as string;
    acct.priority = this.priorityOf(request, principal);
    const stream = endpoint !== 'embeddings' && body.stream === true;
    acct.stream = stream;

    if (!modelAllowed(acct.model, principal.apiKey?.allowedModels ?? null)) {
      throw ApiError.forbidden(`This API key may not use model ${acct.model}`, 'model_not_allowed');
    }
    const route = routeModel(acct.model, await this.keyPool.routableProviders());
    if (!route) throw modelNotFound(acct.model);
    const provider = route.provider;
    acct.provider = provider;
    acct.modelLabel = route.matched;

    let injectedUsage = false;
    if (stream) {
      const options = (body.stream_options ?? {}) as Record<string, unknown>;
      if (typeof options !== 'object' || options === null || Array.isArray(options)) {
        throw ApiError.badRequest('stream_options must be an object', 'stream_options');
      }
      if (options.include_usage !== true) {
        body.stream_options = { ...options, include_usage: true };
        injectedUsage = true;
      }
    }
    const payload = JSON.stringify(body);

    // Admission: straight upstream when uncontended; otherwise wait in the priority queue.
    let lease = await withSpan(
      'relay.admission',
      (span) =>
        this.admit(provider, acct, request, signal).finally(() =>
          span.setAttribute('queue_ms', acct.queueMs),
        ),
      {
        provider: provider.name,
        priority: acct.priority,
      },
    );
    const tried: string[] = [];
    for (;;) {
      acct.attempts++;
      tried.push(lease.keyId);
      acct.keyId = lease.keyId;
      acct.lease = lease;
      this.hold(lease);
      const attempt = await this.send(endpoint, lease, request, payload, signal);
      const retry = await this.afterAttempt(attempt, acct, tried, provider, signal);
      if (retry === 'respond') {
        if (stream && attempt.response!.statusCode === 200) {
          await this.streamBack(attempt, reply, acct, injectedUsage, signal);
        } else {
          await this.sendBack(attempt, reply, acct);
        }
        return;
      }
      lease = retry;
    }
  }

  private priorityOf(request: FastifyRequest, principal: Principal): Priority {
    const raw = request.headers['x-priority'];
    const value = (Array.isArray(raw) ? raw[0] : raw)?.trim().toLowerCase() || 'normal';
    if (!(value in PRIORITY_RANK)) {
      throw ApiError.badRequest(
        `X-Priority must be one of urgent, high, normal, low, got ${JSON.stringify(value.slice(0, 32))}`,
        'X-Priority',
        'invalid_priority',
      );
    }
    const priority = value as Priority;
    const max: Priority = principal.apiKey?.maxPriority ?? (principal.role === 'admin' ? 'urgent' : 'high');
    if (PRIORITY_RANK[priority] < PRIORITY_RANK[max]) {
      throw ApiError.forbidden(
        `X-Priority ${priority} is above the allowed maximum for this credential (${max})`,
        'priority_not_allowed',
      );
    }
    return priority;
  }

  private async admit(
    provider: RoutableProvider,
    acct: Accounting,
    request: FastifyRequest,
    signal: AbortSignal,
  ): Promise<KeyLease> {
    const rank = PRIORITY_RANK[acct.priority];
    const first = await this.admission.tryAcquire(provider.id, rank, false);
    if (first.ok) {
      this.metrics.queueWait.labels(provider.name, acct.priority).observe(0);
      return first.lease;
    }
    const refusal = first.refusal;
    const timeoutMs = this.waitTimeoutMs[acct.priority];
    this.refuseIfHopeless(refusal, timeoutMs);
    const depth = await this.dispatcher.depthWithin(provider.id, Math.min(timeoutMs, 1000));
    if (!depth) {
      throw relayError(
        503,
        'service_unavailable_error',
        'dependency_unavailable',
        'The state store did not answer; retry shortly',
        { retryAfterSeconds: 2, shouldRetry: true },
      );
    }
    const waiting = Object.values(depth).reduce((a, b) => a + b, 0);
    const started = Date.now();
    if (waiting >= this.config.queue.maxPerProvider) {
      if (this.config.queue.fullPolicy === 'reject') {
        throw relayError(
          503,
          'queue_full_error',
          'queue_full',
          `The queue for provider ${provider.name} is full (${waiting} waiting); retry shortly`,
          {
            retryAfterSeconds: 2,
            shouldRetry: true,
          },
        );
      }
      const lease = await this.passthrough(provider.id, rank, timeoutMs, signal);
      acct.queueMs = Date.now() - started;
      this.metrics.queueWait.labels(provider.name, acct.priority).observe(acct.queueMs / 1000);
      return lease;
    }
    const result = await this.dispatcher.wait(provider.id, rank, {
      requestId: String(request.id),
      timeoutMs,
      agingMs: this.config.queue.agingMs,
      signal,
    });
    acct.queueMs = result.waitedMs;
    this.metrics.queueWait.labels(provider.name, acct.priority).observe(result.waitedMs / 1000);
    switch (result.kind) {
      case 'granted':
        return result.lease;
      case 'refused':
        throw this.refusalError(result.refusal);
      case 'aborted':
        throw relayError(499, 'invalid_request_error', 'client_closed_request', 'Client closed the request');
      case 'timeout':
        throw relayError(
          429,
          'rate_limit_error',
          'queue_timeout',
          `Waited ${Math.round(result.waitedMs / 1000)} s for provider ${provider.name} capacity at priority ${acct.priority}; retry later`,
          {
            retryAfterSeconds: 1,
            shouldRetry: true,
          },
        );
    }
  }

  /** Queue full under QUEUE_FULL_POLICY=passthrough: skip the queue, keep asking for admission until the timeout. */
  private async passthrough(
    providerId: string,
    rank: number,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<KeyLease> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.admission.tryAcquire(providerId, rank, true);
      if (r.ok) return r.lease;
      if (r.refusal.kind === 'no_usable_keys') throw this.refusalError(r.refusal);
      if (signal.aborted)
        throw relayError(499, 'invalid_request_error', 'client_closed_request', 'Client closed the request');
      if (Date.now() + Math.min(r.refusal.retryAfterMs, 50) > deadline) {
        throw relayError(
          429,
          'rate_limit_error',
          'queue_timeout',
          'No upstream capacity within the wait timeout; retry later',
          {
            retryAfterSeconds: Math.max(1, r.refusal.retryAfterMs / 1000),
            shouldRetry: true,
          },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(5, Math.min(r.refusal.retryAfterMs, 50))));
    }
  }

  /** Refusals that waiting can't fix within the priority's timeout are answered at once. */
  private refuseIfHopeless(refusal: KeyRefusal, timeoutMs: number): void {
    if (refusal.kind === 'no_usable_keys') throw this.refusalError(refusal);
    // Cooldowns and RPM/TPM windows know when they end; a saturated key frees whenever a request ends.
    if ((refusal.kind === 'cooling' || refusal.kind === 'rate_limited') && refusal.retryAfterMs > timeoutMs) {
      throw this.refusalError(refusal);
    }
  }

  private refusalError(refusal: KeyRefusal): ApiError {
    if (refusal.kind === 'no_usable_keys') {
      return relayError(503, 'service_unavailable_error', refusal.code, refusal.message, {
        retryAfterSeconds: 30,
        shouldRetry: false,
      });
    }
    return relayError(429, 'rate_limit_error', refusal.code, refusal.message, {
      retryAfterSeconds: Math.max(1, refusal.retryAfterMs / 1000),
      shouldRetry: true,
    });
  }

  private async send(
    endpoint: Endpoint,
    lease: KeyLease,
    request: FastifyRequest,
    payload: string,
    signal: AbortSignal,
  ): Promise<Attempt> {
    const startedAt = performance.now();
    return withSpan(
      'relay.upstream',
      async (span) => {
        const headers = upstreamRequestHeaders(
          request.headers,
          lease.apiKey,
          lease.headers,
          String(request.id),
        );
        injectTraceContext(headers, span);
        try {
          const response = await this.upstream.send({
            baseUrl: lease.baseUrl,
            path: UPSTREAM_PATHS[endpoint],
            method: 'POST',
            headers,
            body: payload,
            signal,
            timeoutMs: lease.timeoutMs,
          });
          span.setAttribute('http.response.status_code', response.statusCode);
          return { lease, response, startedAt };
        } catch (err) {
          return { lease, error: classify(err), startedAt };
        }
      },
      { provider: lease.providerName, upstream_key_id: lease.keyId },
    );
  }

  /**
   * Decides what to do with an attempt: answer the client with it, or retry once on another key
   * that is free right now (upstream 429, 401/403, 5xx, connection failure). Timeouts are not retried.
   */
  private async afterAttempt(
    attempt: Attempt,
    acct: Accounting,
    tried: string[],
    provider: RoutableProvider,
    signal: AbortSignal,
  ): Promise<KeyLease | 'respond'> {
    const { lease, response, error } = attempt;
    if (error) {
      acct.upstreamMs += performance.now() - attempt.startedAt;
      await this.release(lease, {
        error:
          error.kind === 'refused_address' ? 'connect' : error.kind === 'aborted' ? 'aborted' : error.kind,
      });
      if (error.kind === 'aborted' || signal.aborted) {
        throw relayError(499, 'invalid_request_error', 'client_closed_request', 'Client closed the request');
      }
      if (error.kind === 'timeout') {
        throw relayError(
          504,
          'upstream_timeout_error',
          'upstream_timeout',
          `Provider ${provider.name} did not answer within ${lease.timeoutMs} ms`,
          {
            shouldRetry: true,
          },
        );
      }
      const next = acct.attempts < 2 ? await this.retryLease(provider, acct, tried) : null;
      if (next) return next;
      throw relayError(
        502,
        'upstream_error',
        error.kind === 'refused_address' ? 'upstream_address_refused' : 'upstream_unreachable',
        `Could not reach provider ${provider.name}`,
        {
          shouldRetry: true,
        },
      );
    }
    const status = response!.statusCode;
    // 1xx/3xx are not answers an OpenAI-compatible API gives: never pass a redirect on to the client.
    const unexpected = status < 200 || (status >= 300 && status < 400);
    const retryable = status === 429 || status === 401 || status === 403 || status >= 500 || unexpected;
    if (!retryable) return 'respond';
    // The upstream refused: read its (small) error body — Adaptive tells concurrency 429s from RPM
    // ones by it — tell the key pool, maybe try another key.
    const errorText = await readCapped(response!.body, 16_384);
    acct.upstreamMs += performance.now() - attempt.startedAt;
    await this.release(lease, {
      status,
      headers: response!.headers,
      upstreamError: parseUpstreamJson(errorText)?.error ?? null,
    });
    const next = acct.attempts < 2 ? await this.retryLease(provider, acct, tried) : null;
    if (next) return next;
    if (status === 429) {
      const retryAfter = Number(response!.headers['retry-after']);
      throw relayError(
        429,
        'rate_limit_error',
        'upstream_rate_limited',
        `Provider ${provider.name} is rate limiting every available key; retry later`,
        {
          retryAfterSeconds: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 1,
          shouldRetry: true,
        },
      );
    }
    if (unexpected) {
      throw relayError(
        502,
        'upstream_error',
        'upstream_unexpected_status',
        `Provider ${provider.name} answered ${status}`,
        { shouldRetry: false },
      );
    }
    if (status === 401 || status === 403) {
      throw relayError(
        502,
        'upstream_error',
        'upstream_credentials_rejected',
        `Provider ${provider.name} rejected the gateway's upstream credentials`,
        {
          shouldRetry: false,
        },
      );
    }
    throw relayError(
      502,
      'upstream_error',
      'upstream_error',
      `Provider ${provider.name} answered ${status}`,
      { shouldRetry: true },
    );
  }

  private async retryLease(
    provider: RoutableProvider,
    acct: Accounting,
    tried: string[],
  ): Promise<KeyLease | null> {
    const r = await this.admission.tryAcquire(provider.id, PRIORITY_RANK[acct.priority], true, tried);
    return r.ok ? r.lease : null;
  }

  /**
   * Keeps a lease alive for as long as it is held (waiting for headers, reading a slow body,
   * streaming): renewed three times per TTL until `release`.
   */
  private hold(lease: KeyLease): void {
    const timer = setInterval(() => void this.keyPool.renew(lease).catch(() => undefined), this.renewEveryMs);
    timer.unref();
    this.renewals.set(lease, timer);
  }

  private async release(lease: KeyLease, outcome: KeyOutcome): Promise<void> {
    clearInterval(this.renewals.get(lease));
    this.renewals.delete(lease);
    try {
      await this.keyPool.report(lease, outcome);
    } finally {
      this.dispatcher.capacityReleased(lease.providerId);
    }
  }

  private floodgateHeaders(reply: FastifyReply, acct: Accounting, lease: KeyLease): Record<string, string> {
    acct.overheadMs = Math.max(0, reply.elapsedTime - acct.queueMs - acct.upstreamMs);
    return {
      'x-floodgate-queue-ms': String(Math.round(acct.queueMs)),
      'x-floodgate-overhead-ms': acct.overheadMs.toFixed(2),
      'x-floodgate-provider-key': lease.keyId,
    };
  }

  private async sendBack(attempt: Attempt, reply: FastifyReply, acct: Accounting): Promise<void> {
    const response = attempt.response!;
    const text = await response.body.text();
    acct.upstreamMs += performance.now() - attempt.startedAt;
    const parsed = parseUpstreamJson(text);
    acct.promptTokens = parsed?.usage?.prompt_tokens ?? 0;
    acct.completionTokens = parsed?.usage?.completion_tokens ?? 0;
    acct.status = response.statusCode;
    const outcome: KeyOutcome = {
      status: response.statusCode,
      headers: response.headers,
      tokens: acct.promptTokens + acct.completionTokens,
    };
    const ours = this.floodgateHeaders(reply, acct, attempt.lease);
    if (response.statusCode >= 400) {
      await this.release(attempt.lease, outcome);
      // Upstream client errors (400, 404, 422…) in our one error shape, the upstream's words kept.
      acct.outcome = 'client_error';
      acct.errorCode = parsed?.error?.code ?? 'upstream_rejected_request';
      const upstreamMessage =
        typeof parsed?.error?.message === 'string'
          ? parsed.error.message.slice(0, 2000)
          : `Provider answered ${response.statusCode}`;
      // An upstream that echoes its credential in an error message must not leak it through us.
      const apiKey = attempt.lease.apiKey;
      const message = apiKey ? upstreamMessage.split(apiKey).join('[redacted]') : upstreamMessage;
      const err = new ApiError(
        response.statusCode,
        'invalid_request_error',
        String(acct.errorCode),
        message,
        parsed?.error?.param ?? null,
        {
          ...ours,
          'x-should-retry': 'false',
        },
      );
      throw err;
    }
    void reply
      .status(response.statusCode)
      // The guard's rate-limit headers are already on the reply; upstream headers never replace them.
      .headers({
        ...clientResponseHeaders(response.headers),
        ...(reply.getHeaders() as Record<string, string>),
        ...ours,
      })
      .send(text);
    // Reported after the answer is on its way: the key pool's bookkeeping is not the client's wait.
    await this.release(attempt.lease, outcome);
  }

  private async streamBack(
    attempt: Attempt,
    reply: FastifyReply,
    acct: Accounting,
    injectedUsage: boolean,
    signal: AbortSignal,
  ): Promise<void> {
    const response = attempt.response!;
    const ttfbMs = performance.now() - attempt.startedAt;
    acct.upstreamMs += ttfbMs;
    const ours = this.floodgateHeaders(reply, acct, attempt.lease);
    this.metrics.upstreamTtft.labels(acct.provider!.name, acct.modelLabel).observe(ttfbMs / 1000);
    const upstreamHeaders = clientResponseHeaders(response.headers);
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      ...upstreamHeaders,
      ...(reply.getHeaders() as Record<string, string>),
      ...ours,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    raw.flushHeaders();
    const sse = new SseRelay(injectedUsage);
    let lastWrite = Date.now();
    const keepalive = setInterval(() => {
      if (Date.now() - lastWrite >= KEEPALIVE_MS - 50) {
        raw.write(': keep-alive\n\n');
        lastWrite = Date.now();
      }
    }, KEEPALIVE_MS);
    let failure: UpstreamError | null = null;
    try {
      for await (const chunk of response.body) {
        const out = sse.push(chunk as Buffer);
        if (out) {
          raw.write(out);
          lastWrite = Date.now();
        }
      }
      const rest = sse.end();
      if (rest) raw.write(rest);
    } catch (err) {
      failure = classify(err);
    } finally {
      clearInterval(keepalive);
    }
    acct.upstreamMs += performance.now() - attempt.startedAt - ttfbMs;
    acct.promptTokens = sse.usage?.prompt_tokens ?? 0;
    acct.completionTokens = sse.completionTokens();
    acct.status = 200;
    const aborted = signal.aborted || failure?.kind === 'aborted';
    await this.release(attempt.lease, {
      status: failure && !aborted ? undefined : 200,
      error: aborted
        ? 'aborted'
        : failure
          ? failure.kind === 'refused_address'
            ? 'connect'
            : failure.kind
          : undefined,
      tokens: acct.promptTokens + acct.completionTokens,
    });
    if (aborted) {
      acct.status = 499;
      acct.outcome = 'canceled';
      raw.destroy();
      return;
    }
    if (failure) {
      acct.outcome = 'upstream_error';
      acct.errorCode = 'upstream_stream_interrupted';
      const error = {
        error: {
          type: 'upstream_error',
          code: 'upstream_stream_interrupted',
          message: 'The upstream stream ended unexpectedly',
          param: null,
          request_id: String(reply.request.id),
        },
      };
      raw.write(`data: ${JSON.stringify(error)}\n\n`);
    }
    raw.end();
  }

  private account(endpoint: Endpoint, request: FastifyRequest, principal: Principal, acct: Accounting): void {
    const providerName = acct.provider?.name ?? 'none';
    if (acct.status === 0) acct.status = 500;
    this.metrics.relayRequests.labels(providerName, acct.modelLabel, acct.priority, acct.outcome).inc();
    if (acct.provider && acct.attempts > 0) {
      this.metrics.upstreamLatency.labels(providerName, acct.modelLabel).observe(acct.upstreamMs / 1000);
      this.metrics.overhead.labels(endpoint).observe(acct.overheadMs / 1000);
      if (acct.promptTokens)
        this.metrics.tokens.labels(providerName, acct.modelLabel, 'prompt').inc(acct.promptTokens);
      if (acct.completionTokens)
        this.metrics.tokens.labels(providerName, acct.modelLabel, 'completion').inc(acct.completionTokens);
    }
    const tokens = acct.promptTokens + acct.completionTokens;
    // The client key's TPM window is charged with what was actually used (never blocks the response).
    if (tokens > 0) void this.rateLimit.chargeTokens(principal, tokens);
    this.requestLog.add({
      createdAt: new Date(),
      requestId: String(request.id),
      apiKeyId: principal.apiKeyId,
      userId: principal.userId,
      providerId: acct.provider?.id ?? null,
      providerKeyId: acct.keyId,
      endpoint,
      model: acct.model?.slice(0, 255) ?? null,
      priority: acct.priority,
      status: acct.status,
      errorCode: acct.errorCode,
      promptTokens: acct.promptTokens,
      completionTokens: acct.completionTokens,
      queueMs: Math.round(acct.queueMs),
      upstreamMs: Math.round(acct.upstreamMs),
      overheadMs: Math.round(acct.overheadMs),
      attempts: Math.max(1, acct.attempts),
      stream: acct.stream,
    });
  }
}

interface UpstreamJson {
  usage?: { prompt_tokens?: number; completion_tokens?: number };
  error?: { message?: string; code?: string; type?: string; param?: string };
}

/** Reads at most `limit` bytes of a body as text and discards the rest. */
async function readCapped(body: Dispatcher.ResponseData['body'], limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      if (size < limit) {
        chunks.push(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
    }
  } catch {
    // a body cut short still tells what it managed to
  }
  return Buffer.concat(chunks).toString('utf8').slice(0, limit);
}

function parseUpstreamJson(text: string): UpstreamJson | null {
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === 'object' ? (value as UpstreamJson) : null;
  } catch {
    return null;
  }
}

type RoutableProvider = RoutableBase & { createdAt: Date };

export interface ModelCard {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

function modelNotFound(model: string): ApiError {
  return ApiError.notFound(
    `The model \`${model.slice(0, 256)}\` does not exist or you do not have access to it.`,
    'model_not_found',
    'model',
  );
}

/**
 * The `outcome` label of floodgate_relay_requests_total for an error answer, read from the answer
 * itself (its error type and code), so the three 503s stay apart: queue_full (the provider's queue
 * is full), no_usable_keys (no upstream key can serve), dependency_unavailable (Postgres or Redis
 * unreachable); any other 503 is `unavailable`.
 */
export function outcomeOf(answer: Pick<ErrorResponse, 'status' | 'body'>): string {
  const { type, code } = answer.body.error;
  if (answer.status === 499) return 'canceled';
  switch (type) {
    case 'rate_limit_error':
      return 'rate_limited';
    case 'queue_full_error':
      return 'queue_full';
    case 'service_unavailable_error':
      if (code === 'dependency_unavailable') return 'dependency_unavailable';
      if (code === 'no_usable_upstream_keys') return 'no_usable_keys';
      return 'unavailable';
    case 'upstream_timeout_error':
      return 'upstream_timeout';
    case 'upstream_error':
      return 'upstream_error';
    default:
      return answer.status >= 500 ? 'error' : 'client_error';
  }
}

/** Just enough validation for a clear 400; unknown fields pass through untouched. */
export function validateBody(endpoint: Endpoint, body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw ApiError.badRequest('The request body must be a JSON object', null, 'invalid_body');
  }
  const b = body as Record<string, unknown>;
  const problems: { param: string; message: string }[] = [];
  if (typeof b.model !== 'string' || b.model.trim() === '')
    problems.push({ param: 'model', message: 'model must be a non-empty string' });
  else if (b.model.length > 256)
    problems.push({ param: 'model', message: 'model must be at most 256 characters' });
  else if (unstorableReason(b.model))
    // `model` is stored in the request log (and used in metrics labels); message contents are not
    // stored and pass through to the upstream as they came (docs/relay.md).
    problems.push({ param: 'model', message: `model must not contain ${unstorableReason(b.model)}` });
  if (endpoint === 'chat') {
    if (!Array.isArray(b.messages) || b.messages.length === 0)
      problems.push({ param: 'messages', message: 'messages must be a non-empty array' });
    else if (b.messages.some((m) => m === null || typeof m !== 'object' || Array.isArray(m))) {
      problems.push({ param: 'messages', message: 'every element of messages must be an object' });
    }
  }
  if (endpoint === 'completions' && !(typeof b.prompt === 'string' || Array.isArray(b.prompt))) {
    problems.push({ param: 'prompt', message: 'prompt must be a string or an array' });
  }
  if (endpoint === 'embeddings' && !(typeof b.input === 'string' || Array.isArray(b.input))) {
    problems.push({ param: 'input', message: 'input must be a string or an array' });
  }
  if (b.stream !== undefined && typeof b.stream !== 'boolean')
    problems.push({ param: 'stream', message: 'stream must be a boolean' });
  if (problems.length > 0) {
    throw ApiError.badRequest(
      problems.map((p) => p.message).join('; '),
      problems[0]!.param,
      'validation_failed',
    );
  }
  return { ...b };
}
