import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorBodyFor, toErrorResponse } from '../common/error-response.js';
import { RateLimitService } from './rate-limit.service.js';

/**
 * Counts the requests the auth guard refuses (401, and 403 for a principal lacking a permission),
 * so failed logins count against the IP policy like every other request.
 *
 * Why a hook and not a guard: Nest stops at the first guard that throws, and the rate-limit guard
 * must run after the auth guard to see the principal. So refused requests are decided here, in
 * Fastify's onSend, with the same one-round-trip, all-or-nothing decision (IP policy, plus the
 * key/user policies when a principal was established before a 403). Over the limit, the 401/403
 * becomes our 429 with Retry-After — a credential-stuffing client learns nothing more per attempt
 * and is cut off at the IP limit. A request the guard already decided is never counted twice.
 * Not counted: routes that do not exist (404) and @Public() routes (they never answer 401/403 from
 * the auth guard; /metrics with METRICS_TOKEN does, and is then counted — guessing it is limited).
 */
@Injectable()
export class AuthFailureLimiter implements OnModuleInit {
  private readonly logger = new Logger('RateLimit');

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly limiter: RateLimitService,
  ) {}

  onModuleInit(): void {
    const instance = this.adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    if (!instance || typeof instance.addHook !== 'function') {
      this.logger.warn('not running on Fastify: requests refused by authentication are not rate limited');
      return;
    }
    // Callback-style: every other response passes straight through (an async hook would cost each
    // one a promise and a microtask before its bytes are written).
    instance.addHook('onSend', (request: FastifyRequest, reply: FastifyReply, payload: unknown, done) => {
      const status = reply.statusCode;
      if ((status !== 401 && status !== 403) || this.limiter.isDecided(request)) {
        done(null, payload);
        return;
      }
      this.refuseAuthFailure(request, reply, payload).then(
        (body) => done(null, body),
        (err: Error) => done(err),
      );
    });
  }

  private async refuseAuthFailure(
    request: FastifyRequest,
    reply: FastifyReply,
    payload: unknown,
  ): Promise<unknown> {
    const verdict = await this.limiter.evaluate(request, {}, true);
    for (const [name, value] of Object.entries(verdict.headers)) void reply.header(name, value);
    if (!verdict.error) return payload;
    const response = toErrorResponse(verdict.error, String(request.id));
    void reply.code(response.status);
    void reply.removeHeader('www-authenticate');
    for (const [name, value] of Object.entries(response.headers)) void reply.header(name, value);
    void reply.header('content-type', 'application/json; charset=utf-8');
    return JSON.stringify(errorBodyFor(request.url, response.body));
  }
}
