import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { ApplicationConfig, HttpAdapterHost } from '@nestjs/core';
import type { CanActivate, ExecutionContext } from '@nestjs/common';
import type { Span } from '@opentelemetry/api';
import { SpanStatusCode } from '@opentelemetry/api';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { PinoLogger } from 'nestjs-pino';
import type { Logger as Pino } from 'pino';
import { serverAnswerOf } from '../common/server-answer.js';
import { FloodgateMetrics } from '../metrics/floodgate-metrics.js';
import { HttpMetricsRecorder, type RouteSeries } from './http-metrics.js';
import { runWithSpan, startRequestSpan, withSpan } from './tracing.js';
import { TracingLifecycle } from './tracing.lifecycle.js';

/**
 * Per-request fields the observer, the handler-context guard and the exception filter share. Declared with `decorateRequest` so
 * every request object has the same shape from the start (no hidden-class churn, no allocation).
 */
declare module 'fastify' {
  interface FastifyRequest {
    /** The request has been counted and logged (by onResponse, or by the raw 'close' fallback). */
    fgObserved: boolean;
    /** Metric children bound by HandlerContextGuard (handler reached); null → looked up by route. */
    fgSeries: RouteSeries | null;
    /** `Controller.method`, set by HandlerContextGuard when the request reached a handler. */
    fgHandler: string | null;
    /** What a handler threw, set by the exception filter when `fgHandler` is set (its class is logged; its stack on a 5xx). */
    fgError: unknown;
    /** `error.type` / `error.code` of an error response, read from the body as it is sent. */
    fgErrorType: string | null;
    fgErrorCode: string | null;
    /** The SERVER span of this request (tracing on only). */
    fgSpan: Span | null;
  }
}

const ERROR_BODY = /^\{"error":\{"type":"([a-z_]{1,40})","code":"([A-Za-z0-9_.:-]{1,80})"/;
/** 2xx/3xx answers on these are logged at debug (probes and scrapes would drown everything else). */
const QUIET_ROUTE = /^\/(health|metrics)(\/|$)/;
const kReply = Symbol('floodgate.reply');

type RawResponse = ServerResponse & { [kReply]?: FastifyReply };

/**
 * THE place where every HTTP request is counted (floodgate_http_requests_total and
 * floodgate_http_request_duration_seconds) and logged (one line), whatever answered it: a handler,
 * a guard (401/403/429 never reach the handler), the not-found handler, the body parser, or
 * nobody because the client went away.
 *
 * Two Fastify-level triggers, one guard:
 *  - `onResponse` fires once when the response finished (also for errors and hijacked streams);
 *  - the raw response's 'close' event catches responses that never finished (client disconnected:
 *    counted with status 499 when no header was sent yet, `aborted: true` in the log);
 *  - `request.fgObserved` makes the second trigger a no-op when the first one ran.
 *
 * HandlerContextGuard and the exception filter only add handler-level context to the request
 * (bound metric children, handler name, what the handler threw); they never record, so a request is
 * never counted twice nor missed.
 */
@Injectable()
export class RequestObserver implements OnModuleInit {
  readonly http: HttpMetricsRecorder;
  private log: Pino | undefined;

  constructor(
    metrics: FloodgateMetrics,
    private readonly adapterHost: HttpAdapterHost,
    @Inject(ApplicationConfig) private readonly appConfig: ApplicationConfig,
    private readonly tracing: TracingLifecycle,
  ) {
    this.http = new HttpMetricsRecorder(metrics);
  }

  onModuleInit(): void {
    this.log = PinoLogger.root as unknown as Pino | undefined;
    const fastify = this.adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    if (!fastify) return;
    this.install(fastify, this.tracing.enabled);
    if (this.tracing.enabled) this.traceGlobalGuards();
  }

  private install(fastify: FastifyInstance, tracing: boolean): void {
    fastify.decorateRequest('fgObserved', false);
    fastify.decorateRequest('fgSeries', null);
    fastify.decorateRequest('fgHandler', null);
    fastify.decorateRequest('fgError', null);
    fastify.decorateRequest('fgErrorType', null);
    fastify.decorateRequest('fgErrorCode', null);
    fastify.decorateRequest('fgSpan', null);

    fastify.addHook('onRequest', (request, reply, done) => {
      const raw = reply.raw as RawResponse;
      raw[kReply] = reply;
      raw.on('close', onRawClose);
      if (tracing) {
        request.fgSpan = startRequestSpan(request.method, request.headers.traceparent, {
          'http.request.method': request.method,
          'floodgate.request_id': String(request.id),
        });
      }
      done();
    });
    if (tracing) {
      // Guards, interceptors and the handler run synchronously from here: they all see the request
      // span as the active one (so relay spans and `traceparentHeader()` hang off it).
      fastify.addHook('preHandler', (request, _reply, done) => {
        if (request.fgSpan) runWithSpan(request.fgSpan, done);
        else done();
      });
    }
    fastify.addHook('onSend', (request, reply, payload, done) => {
      if (reply.statusCode >= 400 && typeof payload === 'string') {
        const m = ERROR_BODY.exec(payload);
        if (m) {
          request.fgErrorType = m[1]!;
          request.fgErrorCode = m[2]!;
        }
      }
      done(null, payload);
    });
    fastify.addHook('onResponse', (request, reply, done) => {
      this.observe(request, reply, false);
      done();
    });

    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const observer = this;
    function onRawClose(this: RawResponse): void {
      const reply = this[kReply];
      this[kReply] = undefined;
      if (reply && !reply.request.fgObserved) observer.observe(reply.request, reply, !this.writableFinished);
    }
  }

  /** Counts and logs one finished (or abandoned) request. Exactly once per request. */
  observe(request: FastifyRequest, reply: FastifyReply, closedEarly: boolean): void {
    if (request.fgObserved) return;
    request.fgObserved = true;
    const raw = reply.raw;
    // Answered on the socket outside Fastify (Node's request timeout): log what the client was told.
    const early = serverAnswerOf(raw);
    const aborted = closedEarly && early === undefined;
    if (early !== undefined) {
      request.fgErrorType = early.type;
      request.fgErrorCode = early.code;
    }
    const status = early?.status ?? (aborted && !raw.headersSent ? 499 : reply.statusCode);
    const elapsedMs = reply.elapsedTime;
    const route = request.routeOptions.url;
    const series = request.fgSeries ?? this.http.series(request.method, route);
    series.record(status, elapsedMs / 1000);
    const span = request.fgSpan;
    if (span !== null) this.endSpan(span, request, series.route, status, aborted);
    const log = this.log;
    if (log === undefined) return;
    const level =
      status >= 500 ? 'error' : status >= 400 ? 'warn' : QUIET_ROUTE.test(series.route) ? 'debug' : 'info';
    if (!log.isLevelEnabled(level)) return;
    const path = pathOf(request.url);
    log[level](
      {
        context: 'HTTP',
        request_id: request.id,
        method: request.method,
        route: series.route,
        path,
        status_code: status,
        duration_ms: Math.round(elapsedMs * 100) / 100,
        principal_id: request.principal?.userId ?? null,
        ...(request.fgHandler !== null ? { handler: request.fgHandler } : {}),
        ...(request.fgErrorType !== null
          ? { error_type: request.fgErrorType, error_code: request.fgErrorCode }
          : {}),
        ...(request.fgError !== null ? errorFields(request.fgError, status) : {}),
        ...(aborted ? { aborted: true } : {}),
      },
      `${request.method} ${path} ${status} ${Math.round(elapsedMs)}ms${aborted ? ' (client closed)' : ''}`,
    );
  }

  private endSpan(
    span: Span,
    request: FastifyRequest,
    route: string,
    status: number,
    aborted: boolean,
  ): void {
    span.updateName(`${request.method} ${route}`);
    span.setAttribute('http.route', route);
    span.setAttribute('http.response.status_code', status);
    if (request.principal?.userId) span.setAttribute('floodgate.principal_id', request.principal.userId);
    if (aborted) span.setAttribute('floodgate.aborted', true);
    if (status >= 500)
      span.setStatus({ code: SpanStatusCode.ERROR, message: request.fgErrorCode ?? String(status) });
    span.end();
  }

  /**
   * Tracing on: each global guard (auth, rate limit, …) runs inside its own span, named after its
   * class (`AuthGuard` → `auth`, `RateLimitGuard` → `rate_limit`). Tracing off: nothing is wrapped.
   */
  private traceGlobalGuards(): void {
    for (const guard of this.appConfig.getGlobalGuards()) {
      // Bookkeeping, not a step of the request worth a span.
      if (guard.constructor?.name === 'HandlerContextGuard') continue;
      const original = guard.canActivate.bind(guard) as CanActivate['canActivate'];
      const name = spanNameOfGuard(guard);
      (guard as { canActivate: CanActivate['canActivate'] }).canActivate = (ctx: ExecutionContext) =>
        withSpan(name, () => original(ctx) as Promise<boolean> | boolean) as Promise<boolean> | boolean;
    }
  }
}

/** `AuthGuard` → `auth`, `RateLimitGuard` → `rate_limit`. */
export function spanNameOfGuard(guard: object): string {
  const name = guard.constructor?.name ?? 'guard';
  const base = name.replace(/Guard$/, '') || name;
  return base.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

/** The thrown error's class; for a 5xx also the error (pino's err serializer: message and stack). */
function errorFields(err: unknown, status: number): { error_class: string; err?: unknown } {
  const errorClass = err instanceof Error ? err.constructor.name || err.name : typeof err;
  return status >= 500 && errorClass !== 'ApiError'
    ? { error_class: errorClass, err }
    : { error_class: errorClass };
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
