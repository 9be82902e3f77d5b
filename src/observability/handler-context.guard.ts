import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { RequestObserver } from './request-observer.js';
import type { RouteSeries } from './http-metrics.js';

interface HandlerContext {
  /** `Controller.method`, for the request's log line. */
  name: string;
  /** The metric children of this handler's route template, per HTTP method. */
  series: Map<string, RouteSeries>;
}

/**
 * The LAST global guard (appended by createApp after every APP_GUARD, so it runs only once auth and
 * the rate limit let the request through — "the handler is reached"): tells RequestObserver which
 * handler a request reached. It binds the request to the metric children of its handler's (method,
 * route template) and to the handler's name (`Controller.method`), both resolved once per handler
 * and cached — so recording and logging the request later cost no label work and no string building.
 * It always lets the request through.
 *
 * A guard rather than an interceptor: with no interceptor at all, Nest calls the handler directly
 * instead of building an rxjs pipeline (defer, mergeAll, an async-scope bind, a subscription) for
 * every request — the one global interceptor cost ~20 µs of CPU per request (bench/RESULTS.md,
 * "Where the CPU goes").
 *
 * It records and logs nothing itself: requests rejected by earlier guards (401/403/429) and 404s
 * never get here, and the final status of a failed handler is only known after the exception filter
 * ran. RequestObserver records and logs every request exactly once; what a handler threw is handed
 * to it by the exception filter (`request.fgError`, set when `fgHandler` says a handler was reached).
 */
@Injectable()
export class HandlerContextGuard implements CanActivate {
  private readonly byHandler = new WeakMap<object, HandlerContext>();

  constructor(private readonly observer: RequestObserver) {}

  canActivate(context: ExecutionContext): boolean {
    if (context.getType() === 'http') {
      const request = context.switchToHttp().getRequest<FastifyRequest>();
      const handler = context.getHandler();
      let known = this.byHandler.get(handler);
      if (known === undefined) {
        known = { name: `${context.getClass().name}.${handler.name}`, series: new Map() };
        this.byHandler.set(handler, known);
      }
      let series = known.series.get(request.method);
      if (series === undefined) {
        series = this.observer.http.series(request.method, request.routeOptions.url);
        known.series.set(request.method, series);
      }
      request.fgSeries = series;
      request.fgHandler = known.name;
    }
    return true;
  }
}
