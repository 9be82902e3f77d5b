import { Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { PinoLogger } from 'nestjs-pino';

/**
 * The logging context of a request: whatever logs while a request is being served (a Nest `Logger`,
 * a `PinoLogger`) carries its `request_id`, the same binding pino-http's `req.log` used to carry.
 *
 * One Fastify `onRequest` hook and one pino child with one binding per request. It replaces
 * nestjs-pino's per-request middleware, which ran pino-http (three child loggers, the request
 * serializer and redaction of each, `req.allLogs`/`res.allLogs` arrays, response listeners) and
 * routed every request through @fastify/middie, for a `req.log` nothing reads: the request's one
 * log line is written by RequestObserver (src/observability/request-observer.ts) from the root
 * logger, with its fields spelled out.
 */
@Injectable()
export class RequestLogContext implements OnModuleInit {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly logger: PinoLogger,
  ) {}

  onModuleInit(): void {
    const fastify = this.adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    if (!fastify) return;
    const logger = this.logger;
    fastify.addHook('onRequest', (request, _reply, done) => {
      logger.runInContext(done, { bindings: { request_id: request.id } });
    });
  }
}
