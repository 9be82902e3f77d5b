import { Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { AsyncLocalStorage } from 'node:async_hooks';

/** The id of the request being served (undefined outside a request). */
const currentRequestId = new AsyncLocalStorage<string>();

/**
 * pino `mixin` of the root logger: a line written while a request is served carries its
 * `request_id`. Fields the call passes itself win (pino merges the call's object over this one), so
 * a line that names a request id explicitly is never duplicated or overridden.
 */
export function requestIdMixin(): { request_id?: string } {
  const id = currentRequestId.getStore();
  return id === undefined ? {} : { request_id: id };
}

/**
 * The logging context of a request: whatever logs while a request is being served (a Nest `Logger`,
 * a `PinoLogger`) carries its `request_id`, the same binding pino-http's `req.log` used to carry.
 *
 * One Fastify `onRequest` hook per request that enters the request id into an AsyncLocalStorage;
 * the root logger's `mixin` (requestIdMixin, set in logging.module.ts) reads it when — and only
 * when — a line is written. No pino child logger per request (nestjs-pino's `runInContext` built one
 * for every request, serialising and redacting its bindings, whether the request logged anything or
 * not). It replaces nestjs-pino's per-request middleware, which ran pino-http (three child loggers,
 * the request serializer and redaction of each, `req.allLogs`/`res.allLogs` arrays, response
 * listeners) and routed every request through @fastify/middie, for a `req.log` nothing reads: the
 * request's one log line is written by RequestObserver (src/observability/request-observer.ts) from
 * the root logger, with its fields spelled out.
 */
@Injectable()
export class RequestLogContext implements OnModuleInit {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  onModuleInit(): void {
    const fastify = this.adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    if (!fastify) return;
    fastify.addHook('onRequest', (request, _reply, done) => {
      currentRequestId.run(String(request.id), done);
    });
  }
}
