import { Injectable } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { performance } from 'node:perf_hooks';
import type { Priority } from '../../common/principal.js';
import type { KeyLease, KeyOutcome } from '../../key-pool/key-pool.types.js';
import type { Span } from '@opentelemetry/api';
import { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';
import { injectTraceContext, tracingEnabled, withSpan } from '../../observability/tracing.js';
import { BreakerService } from '../../routing/services/breaker.service.js';
import type { AttemptRecord } from '../domain/attempt.js';
import { upstreamRequestHeaders } from '../domain/headers.js';
import { parseUpstreamJson } from '../domain/outcome.js';
import {
  attemptOutcome,
  breakerOutcome,
  failureOutcome,
  retryDecision,
  type Observed,
} from '../domain/retry-table.js';
import { withModel } from '../domain/route-model.js';
import { exchangeFor, type Exchange } from '../domain/exchange.js';
import { badRequest, type Rejection } from '../domain/rejection.js';
import type { Endpoint } from '../domain/validation.js';
import {
  UpstreamClient,
  UpstreamError,
  classify,
  type UpstreamBody,
  type UpstreamRequest,
  type UpstreamResponse,
} from '../infrastructure/upstream-client.js';
import { AdmitStage } from './admit.stage.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { ClientGone } from './client-gone.js';
import { reject } from './reject.js';
import { SpendBudgets } from '../infrastructure/spend-budgets.js';
import type { RoutableProvider, RouteContext, RoutedTarget } from './route.stage.js';

export const ROUTE_TARGET_HEADER = 'x-floodgate-route-target';

/** One request to the upstream with a held lease: its response (headers in, body unread) or its failure. */
export interface Attempt {
  lease: KeyLease;
  /** How this attempt was sent and how its answer is read (the target's provider kind decides). */
  exchange: Exchange;
  /** Floodgate asked for stream usage on the client's behalf in this attempt's body. */
  injectedUsage: boolean;
  /** Not sent: the body cannot go to this target's provider (its kind can't serve the endpoint, or a translation refused it). */
  refused?: Rejection;
  response?: UpstreamResponse;
  error?: UpstreamError;
  startedAt: number;
}

/** What sending did: how many attempts, with which key, how long upstream took — and the answer to give, or the error. */
export interface Delivery {
  attempts: number;
  keyId: string;
  upstreamMs: number;
  /** Every attempt, oldest first (request_log.attempt_log). */
  attemptLog: AttemptRecord[];
  /** A routed request: the target of the last attempt (the answer's, when there is one), and whether it held the breaker's probe. */
  target: RoutedTarget | null;
  probe: boolean;
  /** The attempt whose response goes to the client (its lease still held: the responder releases it). */
  answer?: Attempt & { response: UpstreamResponse };
  error?: unknown;
}

export interface SendInput {
  endpoint: Endpoint;
  request: FastifyRequest;
  reply: FastifyReply;
  provider: RoutableProvider;
  priority: Priority;
  /** The upstream body without a route (the client's, as it came, or as the exchange rewrote it). */
  payload: string;
  /** Without a route: the exchange the payload was built for (null with a route: each target's provider kind decides). */
  exchange: Exchange | null;
  /** Without a route: the payload asks for stream usage on the client's behalf. */
  injectedUsage: boolean;
  signal: ClientGone;
  requestId: string;
  /** The model the client sent (the attempt log's model without a route). */
  model: string;
  stream: boolean;
  /** A routed request: its route, and the client's body (each target gets it with its own model). */
  route: RouteContext | null;
  body: Record<string, unknown>;
}

/** The target the admitted lease is for (routed requests). */
export interface Targeted {
  target: RoutedTarget;
  probe: boolean;
}

/**
 * Sends the request upstream with the admitted lease and applies the retry table (domain/retry-table.ts).
 * Without a route: at most one retry, on another key of the provider that is free right now. With
 * one: a retryable failure (429, 5xx, connection error, timeout before the first byte) moves to the
 * next target of the plan not yet tried that has a key free now, up to the route's max_attempts;
 * never after the answer's first byte, never for the client's 4xx. A refused attempt's lease is
 * released here with what the upstream said (KeyPool cools the key down, Adaptive learns); a
 * target's breaker hears 5xx, timeouts and connection errors as failures, a 2xx as a success (a
 * 2xx stream: when it ends, relay.service.ts).
 */
@Injectable()
export class SendStage {
  constructor(
    private readonly upstream: UpstreamClient,
    private readonly leases: LeaseKeeper,
    private readonly admit: AdmitStage,
    private readonly breaker: BreakerService,
    private readonly metrics: FloodgateMetrics,
    private readonly budgets: SpendBudgets,
  ) {}

  async deliver(input: SendInput, first: KeyLease, targeted: Targeted | null = null): Promise<Delivery> {
    const tried: string[] = [];
    const attemptLog: AttemptRecord[] = [];
    const route = input.route;
    const triedTargets = route ? new Set<RoutedTarget>() : null;
    let target = targeted?.target ?? null;
    let probe = targeted?.probe ?? false;
    let lease = first;
    let upstreamMs = 0;
    try {
      for (;;) {
        tried.push(lease.keyId);
        if (target) {
          triedTargets!.add(target);
          void input.reply.header(ROUTE_TARGET_HEADER, target.label);
        }
        this.leases.hold(lease);
        const attempt = await this.send(input, lease, target);
        if (attempt.refused) {
          await this.leases.release(lease, { notSent: true });
          const error = reject(attempt.refused);
          return { attempts: tried.length, keyId: lease.keyId, upstreamMs, attemptLog, target, probe, error };
        }
        const observed: Observed = attempt.error
          ? { failure: attempt.error.kind }
          : { status: attempt.response!.statusCode, retryAfter: attempt.response!.headers['retry-after'] };
        const context = {
          attempt: tried.length,
          maxAttempts: route ? route.def.maxAttempts : 2,
          routed: route !== null,
          clientGone: input.signal.aborted,
          providerName: lease.providerName,
          timeoutMs: target?.target.timeouts?.firstByteMs ?? lease.timeoutMs,
        };
        const record: AttemptRecord = {
          attempt: tried.length,
          providerId: lease.providerId,
          model: target ? target.target.model : input.model,
          keyId: lease.keyId,
          status: attempt.response ? attempt.response.statusCode : null,
          outcome: attemptOutcome(observed),
          ms: 0,
        };
        attemptLog.push(record);
        if (retryDecision(observed, context).action === 'respond') {
          record.ms = Math.round(performance.now() - attempt.startedAt);
          // A 200 stream tells its breaker when it ends (relay.service.ts); any other answer now.
          if (target && !(input.stream && attempt.response?.statusCode === 200))
            this.report(target, observed, probe);
          this.leases.answers(
            lease,
            input.request.principal,
            this.budgets.holdOf(input.request),
            target ? target.target.model : input.model,
          );
          return {
            attempts: tried.length,
            keyId: lease.keyId,
            upstreamMs,
            attemptLog,
            target,
            probe,
            answer: attempt as Delivery['answer'],
          };
        }
        // Not the answer: the lease goes back with what happened, then the table decides (the
        // client may have gone meanwhile).
        const settled = await this.settle(attempt);
        upstreamMs += settled.upstreamMs;
        record.ms = Math.round(settled.upstreamMs);
        if (target) this.report(target, observed, probe);
        await this.leases.release(lease, settled.outcome);
        const decision = retryDecision(observed, { ...context, clientGone: input.signal.aborted });
        if (decision.action === 'respond')
          throw new Error('unreachable: an answer for the client was settled');
        let next: KeyLease | null = null;
        if (decision.action === 'retry') {
          if (route) {
            const fallback = await this.admit.anotherTarget(route, triedTargets!, input.priority);
            if (fallback) {
              this.metrics.routeFallbacks.labels(route.def.model, record.outcome).inc();
              next = fallback.lease;
              target = fallback.target;
              probe = fallback.probe;
            }
          } else next = await this.admit.another(input.provider.id, input.priority, tried);
        }
        if (!next) {
          const error = reject(decision.rejection);
          return { attempts: tried.length, keyId: lease.keyId, upstreamMs, attemptLog, target, probe, error };
        }
        lease = next;
      }
    } catch (error) {
      await this.leases.releaseIfHeld(lease);
      return { attempts: tried.length, keyId: lease.keyId, upstreamMs, attemptLog, target, probe, error };
    }
  }

  /**
   * What a target's breaker hears about an attempt (nothing for 429s, the client's 4xx, a client
   * gone — a probe that told nothing is given back, so another request may probe at once).
   */
  private report(target: RoutedTarget, observed: Observed, probe: boolean): void {
    const outcome = breakerOutcome(observed);
    if (outcome) this.breaker.report(target.ref, outcome, probe);
    else if (probe) this.breaker.releaseProbe(target.ref);
  }

  private send(input: SendInput, lease: KeyLease, target: RoutedTarget | null): Promise<Attempt> {
    // In a span when tracing; with it off, the request goes out without a closure of its own.
    if (!tracingEnabled()) return this.attempt(input, lease, target, null);
    return withSpan('relay.upstream', (span) => this.attempt(input, lease, target, span), {
      provider: lease.providerName,
      upstream_key_id: lease.keyId,
    }) as Promise<Attempt>;
  }

  private attempt(
    input: SendInput,
    lease: KeyLease,
    target: RoutedTarget | null,
    span: Span | null,
  ): Promise<Attempt> {
    const startedAt = performance.now();
    const headers = upstreamRequestHeaders(
      input.request.headers,
      lease.apiKey,
      lease.headers,
      input.requestId,
      lease.providerKind,
      input.endpoint,
    );
    if (span) injectTraceContext(headers, span);
    let body = input.payload;
    let exchange = input.exchange;
    let injectedUsage = input.injectedUsage;
    let timeouts: UpstreamRequest['timeouts'];
    if (target) {
      // The target's model upstream, in the target's provider's dialect (the client's body otherwise
      // unchanged), and the target's timeouts.
      exchange = exchangeFor(input.endpoint, target.provider.kind);
      if (!exchange)
        return Promise.resolve(unsupported(input.endpoint, lease, target.provider.kind, startedAt));
      const payload = exchange.payload(withModel(input.body, target.target.model), input.stream);
      if (!payload.ok) return Promise.resolve(refusedPayload(payload.rejection, lease, exchange, startedAt));
      body = payload.value.payload;
      injectedUsage = payload.value.injectedUsage;
      const t = target.target.timeouts;
      if (t)
        timeouts = {
          connectMs: t.connectMs,
          firstByteMs: t.firstByteMs,
          totalMs: input.stream ? t.streamTotalMs : t.totalMs,
        };
    }
    const sent = exchange!;
    const request: UpstreamRequest = {
      baseUrl: lease.baseUrl,
      path: sent.path,
      method: 'POST',
      headers,
      body,
      signal: input.signal,
      timeoutMs: lease.timeoutMs,
    };
    if (timeouts) request.timeouts = timeouts;
    return this.upstream.send(request).then(
      (response): Attempt => {
        span?.setAttribute('http.response.status_code', response.statusCode);
        return { lease, exchange: sent, injectedUsage, response, startedAt };
      },
      (err: unknown): Attempt => ({ lease, exchange: sent, injectedUsage, error: classify(err), startedAt }),
    );
  }

  /**
   * An attempt that is not the answer: what the key pool is told — for an upstream refusal its
   * (small) error body, by which Adaptive tells concurrency 429s from RPM ones — and the time spent upstream.
   */
  private async settle(attempt: Attempt): Promise<{ upstreamMs: number; outcome: KeyOutcome }> {
    const { response, error } = attempt;
    if (error)
      return {
        upstreamMs: performance.now() - attempt.startedAt,
        outcome: { error: failureOutcome(error.kind) },
      };
    const errorText = await readCapped(response!.body, 16_384);
    return {
      upstreamMs: performance.now() - attempt.startedAt,
      outcome: {
        status: response!.statusCode,
        headers: response!.headers,
        upstreamError: parseUpstreamJson(errorText)?.error ?? null,
      },
    };
  }
}

/** Reads at most `limit` bytes of a body as text and discards the rest. */
async function readCapped(body: UpstreamBody, limit: number): Promise<string> {
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

/** An attempt the target's provider cannot take: its kind does not serve the endpoint. */
function unsupported(endpoint: Endpoint, lease: KeyLease, kind: string, startedAt: number): Attempt {
  const exchange = exchangeFor('chat', 'openai')!;
  return {
    lease,
    exchange,
    injectedUsage: false,
    startedAt,
    refused: badRequest(
      `Provider ${lease.providerName} (kind ${kind}) does not serve this endpoint (${endpoint})`,
      'model',
      'endpoint_not_supported',
    ),
  };
}

/** An attempt whose body the exchange refused (a translation that cannot carry a field). */
function refusedPayload(
  rejection: Rejection,
  lease: KeyLease,
  exchange: Exchange,
  startedAt: number,
): Attempt {
  return { lease, exchange, injectedUsage: false, startedAt, refused: rejection };
}
