import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { Observable } from 'rxjs';
import { RequestObserver } from './request-observer.js';
import type { RouteSeries } from './http-metrics.js';

/**
 * Global metrics interceptor: binds the request to the metric children of its handler's
 * (method, route template), resolved once per handler and method and cached — so recording the
 * request later costs two array reads and no label work at all.
 *
 * It deliberately records nothing itself: requests rejected by guards (401/403/429) and 404s never
 * reach interceptors, and the final status of a failed handler is only known after the exception
 * filter ran. RequestObserver's onResponse hook records every request exactly once (see there).
 */
@Injectable()
export class MetricsInterceptor implements NestInterceptor {
  private readonly byHandler = new WeakMap<object, Map<string, RouteSeries>>();

  constructor(private readonly observer: RequestObserver) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() === 'http') {
      const request = context.switchToHttp().getRequest<FastifyRequest>();
      const handler = context.getHandler();
      let byMethod = this.byHandler.get(handler);
      if (byMethod === undefined) {
        byMethod = new Map();
        this.byHandler.set(handler, byMethod);
      }
      let series = byMethod.get(request.method);
      if (series === undefined) {
        series = this.observer.http.series(request.method, request.routeOptions.url);
        byMethod.set(request.method, series);
      }
      request.fgSeries = series;
    }
    return next.handle();
  }
}
