import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { ApiError } from '../common/api-error.js';
import { callerCan, can, REQUIRED_PERMISSION, type RequiredPermission } from '../common/permissions.js';
import { IS_PUBLIC } from '../common/public.decorator.js';
import type { Principal } from '../common/principal.js';
import { CredentialVerifier } from './credential-verifier.js';

interface RouteAuth {
  isPublic: boolean;
  required: RequiredPermission | null;
}

/**
 * THE global guard (APP_GUARD, registered first). Default deny: every route needs valid
 * credentials unless it is @Public(); a route with @RequirePermission(resource, action, scope) also
 * needs the caller's role to hold that grant in the matrix (else 403). On success the principal is
 * on `request.principal` for later guards and handlers.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  private readonly routes = new WeakMap<object, WeakMap<object, RouteAuth>>();

  constructor(
    private readonly reflector: Reflector,
    private readonly verifier: CredentialVerifier,
  ) {}

  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    // Only HTTP exists here; anything else fails closed rather than slipping past authentication.
    if (context.getType() !== 'http') return false;
    const route = this.routeAuth(context);
    if (route.isPublic) return true;
    // An http context's first argument is the request (what switchToHttp().getRequest() returns,
    // without the three closures switchToHttp assigns onto the context on every call).
    const request = context.getArgByIndex<FastifyRequest>(0);
    // An API key the credential cache knows: decided now, no promise (the relay's hot path).
    const cached = this.verifier.cachedPrincipal(request.headers);
    if (cached !== undefined) {
      try {
        return this.permit(request, cached, route.required);
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    return this.verifier
      .authenticate(request)
      .then((principal) => this.permit(request, principal, route.required));
  }

  /**
   * Puts the principal on the request; 403 when the route needs a grant its role lacks (a route of
   * scope `team` also admits its team's team_admin, and checks the target's team itself).
   */
  private permit(request: FastifyRequest, principal: Principal, required: RequiredPermission | null): true {
    request.principal = principal;
    if (required && !callerCan(principal, required.resource, required.action, required.scope)) {
      const ownOnly = can(principal.role, required.resource, required.action, 'own');
      throw ApiError.forbidden(
        ownOnly
          ? `Your role (${principal.role}) may ${required.action} only its own ${required.resource}`
          : `Your role (${principal.role}) may not ${required.action} ${required.resource}`,
        'insufficient_permission',
      );
    }
    return true;
  }

  /** Route metadata, read once per handler (the reflector walk is off the hot path). */
  private routeAuth(context: ExecutionContext): RouteAuth {
    const handler = context.getHandler();
    const controller = context.getClass();
    let byHandler = this.routes.get(controller);
    if (!byHandler) {
      byHandler = new WeakMap();
      this.routes.set(controller, byHandler);
    }
    let route = byHandler.get(handler);
    if (!route) {
      const targets = [handler, controller];
      route = {
        isPublic: this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, targets) === true,
        required:
          this.reflector.getAllAndOverride<RequiredPermission | undefined>(REQUIRED_PERMISSION, targets) ??
          null,
      };
      byHandler.set(handler, route);
    }
    return route;
  }
}
