import { Controller, Get, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { describe, expect, it, vi } from 'vitest';
import { ApiError } from '../common/api-error.js';
import { RequirePermission } from '../common/permissions.js';
import type { Principal, Role } from '../common/principal.js';
import { Public } from '../common/public.decorator.js';
import { AuthGuard } from './auth.guard.js';
import type { CredentialVerifier } from './credential-verifier.js';

@Controller('x')
class Routes {
  @Get('plain') plain(): void {}
  @Public() @Get('public') open(): void {}
  @RequirePermission('relay', 'write') @Get('relay') relay(): void {}
  @RequirePermission('api_keys', 'write', 'own') @Get('own') own(): void {}
  @RequirePermission('api_keys', 'write') @Get('any') anyKeys(): void {}
}

@Public()
@Controller('infra')
class PublicRoutes {
  @Get() probe(): void {}
}

function context(
  cls: object,
  handler: (...args: never[]) => unknown,
  request: Record<string, unknown>,
): ExecutionContext {
  return {
    getType: () => 'http',
    getHandler: () => handler,
    getClass: () => cls,
    // as Nest's ExecutionContextHost: an http context's first argument is the request
    getArgByIndex: (i: number) => [request][i],
    switchToHttp: () => ({ getRequest: () => request }),
  } as unknown as ExecutionContext;
}

function guardFor(
  role: Role | null,
  { cached = false } = {},
): { guard: AuthGuard; authenticate: ReturnType<typeof vi.fn> } {
  const principal = (): Principal => ({
    userId: 'u',
    email: null,
    role: role!,
    method: 'api_key',
    apiKeyId: 'k',
    apiKey: null,
  });
  const authenticate = vi.fn(async (): Promise<Principal> => {
    if (!role) throw ApiError.unauthorized('Authorization header is missing');
    return principal();
  });
  // The credential cache's synchronous answer: a principal when `cached`, else "ask authenticate".
  const cachedPrincipal = vi.fn(() => (cached && role ? principal() : undefined));
  return {
    guard: new AuthGuard(new Reflector(), { authenticate, cachedPrincipal } as unknown as CredentialVerifier),
    authenticate,
  };
}

/** canActivate answers synchronously when it can (public route, cached key); the tests look at the settled answer. */
function settled(guard: AuthGuard, ctx: ExecutionContext): Promise<boolean> {
  return Promise.resolve(guard.canActivate(ctx));
}

const p = Routes.prototype;

describe('AuthGuard', () => {
  it('lets @Public() routes (method or class) through without looking at credentials', async () => {
    const { guard, authenticate } = guardFor(null);
    await expect(settled(guard, context(Routes, p.open, { headers: {} }))).resolves.toBe(true);
    await expect(
      settled(guard, context(PublicRoutes, PublicRoutes.prototype.probe, { headers: {} })),
    ).resolves.toBe(true);
    expect(authenticate).not.toHaveBeenCalled();
  });

  it('denies by default: a route with neither @Public() nor @RequirePermission() still needs credentials', async () => {
    const { guard } = guardFor(null);
    await expect(settled(guard, context(Routes, p.plain, { headers: {} }))).rejects.toMatchObject({
      status: 401,
    });
  });

  it('puts the principal on the request for later guards and handlers', async () => {
    const { guard } = guardFor('viewer');
    const request: Record<string, unknown> = { headers: {} };
    await expect(settled(guard, context(Routes, p.plain, request))).resolves.toBe(true);
    expect(request.principal).toMatchObject({ userId: 'u', role: 'viewer' });
  });

  it('enforces @RequirePermission against the matrix: 403 when the role lacks the grant', async () => {
    await expect(settled(guardFor('user').guard, context(Routes, p.relay, { headers: {} }))).resolves.toBe(
      true,
    );
    const denied = settled(guardFor('viewer').guard, context(Routes, p.relay, { headers: {} }));
    await expect(denied).rejects.toMatchObject({ status: 403, type: 'permission_error' });
    await expect(settled(guardFor('viewer').guard, context(Routes, p.own, { headers: {} }))).resolves.toBe(
      true,
    );
  });

  it('says why: no grant at all, or a grant on own items only', async () => {
    await expect(
      settled(guardFor('viewer').guard, context(Routes, p.relay, { headers: {} })),
    ).rejects.toMatchObject({
      message: 'Your role (viewer) may not write relay',
    });
    await expect(
      settled(guardFor('user').guard, context(Routes, p.anyKeys, { headers: {} })),
    ).rejects.toMatchObject({
      message: 'Your role (user) may write only its own api_keys',
    });
    await expect(settled(guardFor('admin').guard, context(Routes, p.anyKeys, { headers: {} }))).resolves.toBe(
      true,
    );
  });

  it('fails closed outside HTTP', async () => {
    const ctx = {
      ...context(Routes, p.open, { headers: {} }),
      getType: () => 'rpc',
    } as unknown as ExecutionContext;
    await expect(settled(guardFor('admin').guard, ctx)).resolves.toBe(false);
  });

  it('a key the credential cache knows is decided synchronously (no promise), permissions included', async () => {
    const { guard, authenticate } = guardFor('user', { cached: true });
    const request: Record<string, unknown> = { headers: {} };
    expect(guard.canActivate(context(Routes, p.relay, request))).toBe(true);
    expect(request.principal).toMatchObject({ userId: 'u', role: 'user' });
    const denied = guard.canActivate(context(Routes, p.anyKeys, { headers: {} }));
    expect(denied).toBeInstanceOf(Promise);
    await expect(denied).rejects.toMatchObject({ status: 403, code: 'insufficient_permission' });
    expect(authenticate).not.toHaveBeenCalled();
  });

  it('answers 401 before 403: no credentials on a protected route is 401', async () => {
    await expect(
      settled(guardFor(null).guard, context(Routes, p.relay, { headers: {} })),
    ).rejects.toMatchObject({ status: 401 });
  });
});
