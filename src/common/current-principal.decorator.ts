import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { ApiError } from './api-error.js';
import type { Principal } from './principal.js';

/** The authenticated caller of a route (the auth guard has already run, so it is always there). */
export const CurrentPrincipal = createParamDecorator((_: unknown, ctx: ExecutionContext): Principal => {
  const principal = ctx.switchToHttp().getRequest<FastifyRequest>().principal;
  if (!principal) throw ApiError.unauthorized('Authentication required');
  return principal;
});
