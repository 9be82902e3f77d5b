import { ExecutionContext, Injectable, Logger, type CanActivate } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import {
  InjectThrottlerOptions,
  InjectThrottlerStorage,
  ThrottlerGuard,
  type ThrottlerModuleOptions,
  type ThrottlerStorage,
} from '@nestjs/throttler';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { IS_PUBLIC } from '../common/public.decorator.js';
import type { PolicyOverrides } from './policies.js';
import { RateLimitService, type RequestLimits } from './rate-limit.service.js';
import { RATE_LIMIT_IN_ADMISSION, RATE_LIMIT_ROUTE, type RateLimitOptions } from './rate-limit.types.js';

// @nestjs/throttler's metadata keys (its decorators write them; it does not export the constants).
const THROTTLER_SKIP = 'THROTTLER:SKIP';
const THROTTLER_LIMIT = 'THROTTLER:LIMIT';
const THROTTLER_TTL = 'THROTTLER:TTL';
const BUILTIN = ['key', 'user', 'ip'] as const;

interface RouteLimits extends RequestLimits {
  exempt: boolean;
  /** @RateLimitInAdmission: the handler decides the policies in its own admission step. */
  inAdmission: boolean;
}

/**
 * THE rate-limit guard: @nestjs/throttler's ThrottlerGuard with our decision in place of its
 * per-throttler loop. The throttler's named throttlers (`key`, `user`, `ip`, configured in
 * RateLimitModule) and its decorators keep working — `@SkipThrottle()` (all) or
 * `@SkipThrottle({ ip: true })` (one policy), `@Throttle({ key: { limit, ttl } })` (override a
 * policy on a route) — plus our `@RateLimit({...})` route policies. What changes: every applicable
 * policy is decided in ONE atomic store call, all-or-nothing, and a refusal is our 429 shape. On
 * @RateLimitInAdmission routes (the relay's /v1 POST routes) the guard only computes the policies;
 * the relay decides them in its own admission step, the same script that takes the upstream lease.
 *
 * Ordering: registered as APP_GUARD by RateLimitModule, which app.module.ts imports after
 * AuthModule, so it runs after the auth guard and sees `request.principal`. Requests the auth guard
 * refuses never reach it: AuthFailureLimiter (a Fastify onSend hook) counts those per IP.
 * Exempt: @Public() routes (health, metrics, docs, dashboard) and non-HTTP contexts.
 */
@Injectable()
export class RateLimitGuard extends ThrottlerGuard {
  private readonly log = new Logger('RateLimitGuard');
  private readonly routeCache = new WeakMap<object, WeakMap<object, RouteLimits>>();
  private warnedUnauthenticated = false;

  constructor(
    @InjectThrottlerOptions() options: ThrottlerModuleOptions,
    @InjectThrottlerStorage() storage: ThrottlerStorage,
    reflector: Reflector,
    private readonly limiter: RateLimitService,
  ) {
    super(options, storage, reflector);
    (this as CanActivate).canActivate = (context) => this.decide(context);
  }

  // ThrottlerGuard's signature is Promise-only; Nest calls the instance's `canActivate` (set in the
  // constructor to `decide`), so an exempt route or a relay route answers `true` synchronously: no
  // async function, and no awaits in Nest's guards consumer, on the hot path.
  override canActivate(context: ExecutionContext): Promise<boolean> {
    return Promise.resolve(this.decide(context));
  }

  private decide(context: ExecutionContext): boolean | Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const route = this.routeLimits(context);
    if (route.exempt) return true;
    const { req, res } = this.getRequestResponse(context);
    const request = req as FastifyRequest;
    if (!request.principal && !this.warnedUnauthenticated) {
      this.warnedUnauthenticated = true;
      this.log.warn(
        `${request.method} ${request.routeOptions?.url ?? request.url} reached the rate limiter without a principal: ` +
          'is AuthModule imported before RateLimitModule? Only the IP and route policies apply to such requests.',
      );
    }
    if (route.inAdmission) {
      // The relay decides these policies inside its atomic admission step (one store round trip
      // for limits, gates and key selection); headers and a 429 come from there.
      this.limiter.defer(request, route);
      return true;
    }
    return this.limiter.evaluate(request, route).then((verdict) => {
      const reply = res as FastifyReply;
      for (const name in verdict.headers) void reply.header(name, verdict.headers[name]);
      if (verdict.error) throw verdict.error;
      return true;
    });
  }

  /** Route metadata, read once per handler (no reflector walk on the hot path). */
  private routeLimits(context: ExecutionContext): RouteLimits {
    const handler = context.getHandler();
    const controller = context.getClass();
    let byHandler = this.routeCache.get(controller);
    if (!byHandler) {
      byHandler = new WeakMap();
      this.routeCache.set(controller, byHandler);
    }
    let route = byHandler.get(handler);
    if (!route) {
      route = this.readRoute([handler, controller]);
      byHandler.set(handler, route);
    }
    return route;
  }

  private readRoute(targets: [object, object]): RouteLimits {
    const get = <T>(key: string): T | undefined =>
      this.reflector.getAllAndOverride<T | undefined>(
        key,
        targets as Parameters<Reflector['getAllAndOverride']>[1],
      );
    const routes = this.reflector.getAllAndMerge<Required<RateLimitOptions>[]>(
      RATE_LIMIT_ROUTE,
      targets as Parameters<Reflector['getAllAndMerge']>[1],
    );
    const skipAll = get<boolean>(IS_PUBLIC) === true || get<boolean>(`${THROTTLER_SKIP}default`) === true;
    const skip = new Set<string>();
    const overrides: PolicyOverrides = {};
    for (const name of BUILTIN) {
      if (get<boolean>(`${THROTTLER_SKIP}${name}`) === true) skip.add(name);
      const limit = get<number>(`${THROTTLER_LIMIT}${name}`);
      const ttl = get<number>(`${THROTTLER_TTL}${name}`);
      if (typeof limit === 'number' || typeof ttl === 'number') {
        overrides[name] = {
          limit: typeof limit === 'number' ? limit : undefined,
          ttlMs: typeof ttl === 'number' ? ttl : undefined,
        };
      }
    }
    const exempt = skipAll || (skip.size === BUILTIN.length && routes.length === 0);
    const inAdmission = get<boolean>(RATE_LIMIT_IN_ADMISSION) === true;
    return { exempt, routes, overrides, skip, inAdmission };
  }
}
