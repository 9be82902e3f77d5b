import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { catchError, throwError, type Observable } from 'rxjs';

/**
 * Global logging interceptor: adds handler-level context to the request's ONE log line (written by
 * RequestObserver when the response is done): which handler ran (`Controller.method`) and, when
 * it threw, what it threw: the class (`ApiError`, `QueryFailedError`, `TypeError`…) on every line,
 * and for a 5xx the error itself with its stack — the body of a 500 says only "internal_error",
 * the log says what it was. The error's type and code come from the error body itself, so guard
 * rejections carry them too.
 *
 * No I/O and no logging here: one line per request is a property of the observer, not of this
 * interceptor (guard rejections never get here).
 */
@Injectable()
export class LoggingInterceptor implements NestInterceptor {
  private readonly names = new WeakMap<object, string>();

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const handler = context.getHandler();
    let name = this.names.get(handler);
    if (name === undefined) {
      name = `${context.getClass().name}.${handler.name}`;
      this.names.set(handler, name);
    }
    request.fgHandler = name;
    return next.handle().pipe(
      catchError((err: unknown) => {
        request.fgError = err;
        return throwError(() => err);
      }),
    );
  }
}
