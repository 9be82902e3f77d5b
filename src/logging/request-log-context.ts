import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';

/**
 * The id of the request being served (undefined outside a request). Created lazily: an
 * AsyncLocalStorage that has never been `run` installs no async hooks.
 */
let currentRequestId: AsyncLocalStorage<string> | null = null;

/**
 * pino `mixin` of the root logger: a line written while a request is served carries its
 * `request_id` (set only when LOG_REQUEST_CONTEXT=true). Fields the call passes itself win (pino merges the
 * call's object over this one), so a line that names a request id explicitly is never duplicated
 * or overridden.
 */
export function requestIdMixin(): { request_id?: string } {
  const id = currentRequestId?.getStore();
  return id === undefined ? {} : { request_id: id };
}

/** Installs the per-request binding on a Fastify instance (exported for the unit test). */
export function bindRequestIds(fastify: FastifyInstance): void {
  const storage = (currentRequestId ??= new AsyncLocalStorage<string>());
  fastify.addHook('onRequest', (request, _reply, done) => {
    storage.run(String(request.id), done);
  });
}

/**
 * The logging context of a request, when LOG_REQUEST_CONTEXT=true: whatever logs while a request is
 * being served (a Nest `Logger`, a `PinoLogger`) carries its `request_id`.
 *
 * One Fastify `onRequest` hook per request that enters the request id into an AsyncLocalStorage;
 * the root logger's `mixin` (requestIdMixin, set in logging.module.ts) reads it when — and only
 * when — a line is written. No pino child logger per request, and pino-http's middleware is not
 * mounted: the request's one access line is written by RequestObserver
 * (src/observability/request-observer.ts) from the root logger, with `request_id` spelled out.
 *
 * Off by default: on Node 20 a running AsyncLocalStorage enables async hooks for every promise
 * (an init hook storing the context on it, before/after hooks around each reaction), 6–16 % of
 * the relay's CPU per request with its ~90 promises (bench/RESULTS.md "Where the CPU goes"). With
 * tracing on, OpenTelemetry's context manager pays that price anyway.
 */
@Injectable()
export class RequestLogContext implements OnModuleInit {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    if (!this.config.log.requestContext) return;
    const fastify = this.adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    if (fastify) bindRequestIds(fastify);
  }
}
