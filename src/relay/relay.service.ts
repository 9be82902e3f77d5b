import { Injectable } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { toErrorResponse } from '../common/error-response.js';
import type { Priority } from '../common/principal.js';
import { tracingEnabled, withSpan } from '../observability/tracing.js';
import { BreakerService } from '../routing/services/breaker.service.js';
import { outcomeOf } from './domain/outcome.js';
import { parsePriority, priorityCeiling } from './domain/priority.js';
import { exchangeFor, type Exchange } from './domain/exchange.js';
import { badRequest } from './domain/rejection.js';
import { validateBody, wantsStream, type Endpoint } from './domain/validation.js';
import { AccountStage } from './stages/account.stage.js';
import { AdmitStage, type Admitted, type RouteAdmitted } from './stages/admit.stage.js';
import type { Answer } from './stages/answer.js';
import { JsonResponder } from './stages/json-responder.js';
import { LeaseKeeper } from './stages/lease-keeper.js';
import { ClientGone } from './stages/client-gone.js';
import { accept, reject } from './stages/reject.js';
import { RouteStage, type RoutableProvider, type RouteContext, type Routed } from './stages/route.stage.js';
import { SendStage, type Delivery, type Targeted } from './stages/send.stage.js';
import { ResponsesStage } from './stages/responses.stage.js';
import { SseResponder } from './stages/sse-responder.js';
import { SpendBudgets } from './infrastructure/spend-budgets.js';
import { BodyCaptureService, type CapturedBodies } from '../requests/services/body-capture.service.js';

export type { Endpoint };

/** How the request ended when it ended in an error: what the exception filter answers (or 499). */
interface Failure {
  status: number;
  errorCode: string;
  outcome: string;
}

/**
 * The relay's request path, top to bottom:
 *
 *   validate → route → admit → send → respond → account
 *
 * - validate (domain/validation.ts, domain/priority.ts): a clear 400/403 or the body and priority;
 * - route (stages/route.stage.ts): allowed_models, then a route alias (its targets) or model → provider;
 * - admit (stages/admit.stage.ts): one atomic admission step; the priority queue only when contended;
 *   a route walks its target plan (tiers, weights, breakers) and waits in all its targets' queues at once;
 * - send (stages/send.stage.ts): upstream with the lease, the retry table (domain/retry-table.ts),
 *   at most two attempts — with a route, up to its max_attempts, each on another target;
 * - respond (stages/json-responder.ts, stages/sse-responder.ts): the answer, the lease given back;
 * - account (stages/account.stage.ts): metrics and one request-log row (the client key's TPM charge rides in
 *   the lease's release: infrastructure/answer-charge.ts).
 *
 * Each stage returns what it established; the account at the end is built from those values, so a
 * request that fails halfway is still logged with what it got through. Rules live in domain/ (no
 * Nest, Fastify, Redis or pg); stages/ orchestrate; infrastructure/ talks to the upstream and Postgres.
 */
@Injectable()
export class RelayService {
  constructor(
    private readonly routes: RouteStage,
    private readonly admission: AdmitStage,
    private readonly sender: SendStage,
    private readonly json: JsonResponder,
    private readonly sse: SseResponder,
    private readonly leases: LeaseKeeper,
    private readonly accounting: AccountStage,
    private readonly breaker: BreakerService,
    private readonly budgets: SpendBudgets,
    private readonly responses: ResponsesStage,
    private readonly bodies: BodyCaptureService,
  ) {}

  /** A routed request's admission across its targets (in a span when tracing). */
  private admitRoute(
    route: RouteContext,
    priority: Priority,
    requestId: string,
    client: ClientGone,
    http: { request: FastifyRequest; reply: FastifyReply },
  ): Promise<RouteAdmitted> {
    if (!tracingEnabled()) return this.admission.admitRoute(route, priority, requestId, client, http);
    return withSpan(
      'relay.admission',
      async (span) => {
        const a = await this.admission.admitRoute(route, priority, requestId, client, http);
        span.setAttribute('queue_ms', a.queueMs);
        if ('target' in a) span.setAttribute('route_target', a.target.label);
        return a;
      },
      { route: route.def.model, priority },
    ) as Promise<RouteAdmitted>;
  }

  async handle(endpoint: Endpoint, request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const principal = request.principal!;
    const requestId = String(request.id);
    // The client going away aborts the queue wait or the upstream request at once.
    const client = new ClientGone();
    const onClose = () => {
      if (!reply.raw.writableFinished) client.abort();
    };
    reply.raw.on('close', onClose);

    // What each stage established (null / defaults until it has run).
    let model: string | null = null;
    let priority: Priority = 'normal';
    let stream = false;
    let routed: Routed | null = null;
    /** A routed request: the provider of the target admitted (then of the last attempt). */
    let served: RoutableProvider | null = null;
    /** …and that target's model (what the provider served: it prices the request). */
    let servedModel: string | null = null;
    let queueMs = 0;
    let delivery: Delivery | null = null;
    let answer: Answer | null = null;
    let failure: Failure | null = null;
    /** Body capture (the key's or the route's `capture_bodies`); null, and nothing made, when off. */
    let capture: CapturedBodies | null = null;
    try {
      // validate
      const body = accept(validateBody(endpoint, request.body));
      model = body.model as string;
      priority = accept(parsePriority(request.headers['x-priority'], priorityCeiling(principal)));
      stream = wantsStream(endpoint, body);
      // route
      const routing = this.routes.route(model, principal, endpoint);
      routed = routing instanceof Promise ? await routing : routing;
      if (endpoint === 'responses') routed = await this.responses.pin(routed, body, principal);
      const { modelLabel, route } = routed;
      let provider = routed.provider;
      // Without a route, the provider's kind decides how the request is sent (and whether it can be);
      // a route's targets each get their own at send time.
      let exchange: Exchange | null = null;
      let payload = '';
      let injectedUsage = false;
      if (route === null) {
        exchange = exchangeFor(endpoint, provider.kind);
        if (!exchange)
          throw reject(
            badRequest(
              `Model ${model} is served by a provider of kind ${provider.kind}, which does not serve this endpoint`,
              'model',
              'endpoint_not_supported',
            ),
          );
        ({ payload, injectedUsage } = accept(exchange.payload(body, stream, request.rawJson)));
      } else {
        // A body its first target's dialect refuses is a 400 before admission (each target's payload is built at send time).
        const first = exchangeFor(endpoint, route.targets[0]!.provider.kind);
        if (first) accept(first.payload(body, stream));
      }
      if (principal.apiKey?.captureBodies || route?.def.captureBodies)
        capture = this.bodies.start(request.rawJson ?? JSON.stringify(body));
      // spend budgets: the worst case joins the client limits of the first admission step
      this.budgets.reserve(
        request,
        body,
        route !== null
          ? route.targets.map((t) => ({ providerId: t.provider.id, model: t.target.model }))
          : [{ providerId: provider.id, model }],
      );
      // admit (in a span when tracing; with it off, no closure and promise of its own)
      const http = { request, reply };
      let admitted: Admitted | RouteAdmitted;
      let targeted: Targeted | null = null;
      if (route !== null) {
        const a = await this.admitRoute(route, priority, requestId, client, http);
        queueMs = a.queueMs;
        if ('error' in a) throw a.error;
        admitted = a;
        provider = a.target.provider;
        served = provider;
        servedModel = a.target.target.model;
        targeted = { target: a.target, probe: a.probe };
      } else {
        if (tracingEnabled()) {
          admitted = await withSpan(
            'relay.admission',
            async (span) => {
              try {
                const a = await this.admission.admit(provider, priority, requestId, client, http);
                queueMs = a.queueMs;
                if ('error' in a) throw a.error;
                return a;
              } finally {
                span.setAttribute('queue_ms', queueMs);
              }
            },
            { provider: provider.name, priority },
          );
        } else admitted = await this.admission.admit(provider, priority, requestId, client, http);
        queueMs = admitted.queueMs;
        if ('error' in admitted) throw admitted.error;
      }
      const lease = admitted.lease;
      // send
      const input = {
        endpoint,
        request,
        reply,
        provider,
        priority,
        payload,
        signal: client,
        requestId,
        model,
        stream,
        route,
        body,
        exchange,
        injectedUsage,
      };
      delivery = await this.sender.deliver(input, lease, targeted);
      if (delivery.target) {
        served = delivery.target.provider;
        servedModel = delivery.target.target.model;
      }
      if (!delivery.answer) throw delivery.error;
      // respond
      const { response, startedAt, lease: respondLease } = delivery.answer;
      const respond = {
        reply,
        lease: delivery.answer.lease,
        response,
        startedAt,
        queueMs,
        upstreamMs: delivery.upstreamMs,
        alias: route === null ? null : route.def.model,
        exchange: delivery.answer.exchange,
        injectedUsage: delivery.answer.injectedUsage,
        // a stored response (`store: false` keeps nothing upstream to fetch again)
        onCreated:
          endpoint === 'responses' && body.store !== false
            ? (id: string) => this.responses.created(id, respondLease, principal)
            : undefined,
        capture,
      };
      if (stream && response.statusCode === 200) {
        answer = await this.sse.respond({
          ...respond,
          signal: client,
          providerName: (served ?? provider).name,
          modelLabel,
          requestId,
        });
        // A routed stream tells its target's breaker how it ended (cut mid-way: a failure, not retried).
        if (delivery.target) {
          if (answer.status !== 499)
            this.breaker.report(
              delivery.target.ref,
              answer.outcome === 'ok' ? 'success' : 'failure',
              delivery.probe,
            );
          else if (delivery.probe) this.breaker.releaseProbe(delivery.target.ref);
        }
      } else answer = await this.json.respond(respond);
      if ('error' in answer) throw answer.error;
    } catch (err) {
      // The log and the metric say what the client is told: the same mapping the exception filter
      // answers with (a store outage is 503 dependency_unavailable there, so it is here too).
      const told = toErrorResponse(err, requestId);
      const { type, code } = told.body.error;
      failure = { status: told.status, errorCode: code, outcome: outcomeOf(told.status, type, code) };
      if (client.aborted) {
        failure = { status: 499, errorCode: code, outcome: 'canceled' };
        if (!reply.sent) reply.raw.destroy();
        return;
      }
      throw err;
    } finally {
      reply.raw.off('close', onClose);
      // Any path that left a lease held (an unexpected throw) gives it back here.
      if (delivery?.answer && this.leases.isHeld(delivery.answer.lease))
        await this.leases.releaseIfHeld(delivery.answer.lease);
      // a reservation no answer settled (refused after admission, failed, never sent) goes back
      void this.budgets.release(request);
      // account
      this.accounting.account({
        endpoint,
        requestId,
        principal,
        model,
        priority,
        stream,
        provider: served ?? routed?.provider ?? null,
        modelLabel: routed?.modelLabel ?? 'unknown',
        status: failure?.status ?? answer?.status ?? 0,
        errorCode: failure ? failure.errorCode : (answer?.errorCode ?? null),
        outcome: failure?.outcome ?? answer?.outcome ?? 'ok',
        promptTokens: answer?.promptTokens ?? 0,
        completionTokens: answer?.completionTokens ?? 0,
        cachedPromptTokens: answer?.cachedPromptTokens ?? 0,
        servedModel,
        queueMs,
        upstreamMs: answer?.upstreamMs ?? delivery?.upstreamMs ?? 0,
        overheadMs: answer?.overheadMs ?? 0,
        attempts: delivery?.attempts ?? 0,
        keyId: delivery?.keyId ?? null,
        routeId: routed?.route?.def.id ?? null,
        // A single attempt without a route is the row's own columns (provider, key, status): its
        // attempt_log stays null, so the common row costs no jsonb. Routes and retries log every attempt.
        attemptLog:
          delivery !== null && (routed?.route || delivery.attemptLog.length > 1) ? delivery.attemptLog : null,
        capture,
      });
    }
  }
}
