import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../src/common/principal.js';
import { bearer, createUserWithKey, newApiKey, type UserWithKey } from '../support/auth.js';
import { getJson, MODES, startGateway, type TestGateway } from '../support/gateway.js';

type Caller = Role | 'none';
const CALLERS: Caller[] = ['admin', 'developer', 'user', 'viewer', 'none'];

interface Ctx {
  gw: TestGateway;
  adminKey: string;
  callers: Record<Role, UserWithKey>;
  /** The caller's own user (for /api/keys/{id} routes). */
  self: UserWithKey | null;
}

interface RouteCase {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Path template as in the OpenAPI document. */
  route: string;
  /** Status for an allowed caller. */
  ok: number;
  /** Roles that may call it (everyone else with credentials → 403; no credentials → 401). */
  allowed: Role[];
  /** Builds the concrete path and body for one call (creates whatever the call consumes). */
  prepare(ctx: Ctx): Promise<{ path: string; body?: unknown }>;
}

const ALL: Role[] = ['admin', 'developer', 'user', 'viewer'];

async function throwawayUser(ctx: Ctx): Promise<UserWithKey> {
  return createUserWithKey(ctx.gw, ctx.adminKey, 'user');
}

async function ownKeyId(ctx: Ctx): Promise<string> {
  // A fresh key of the caller's own user (any role may create own keys); none → some user's key.
  const owner = ctx.self ?? (await throwawayUser(ctx));
  const r = await getJson(`${ctx.gw.url}/api/admin/users/${owner.user.id}/keys`, {
    method: 'POST',
    headers: bearer(ctx.adminKey),
    body: JSON.stringify({ name: 'to-revoke' }),
  });
  return r.body.id as string;
}

/** EVERY route of the auth module. */
const ROUTES: RouteCase[] = [
  { method: 'GET', route: '/api/me', ok: 200, allowed: ALL, prepare: async () => ({ path: '/api/me' }) },
  {
    method: 'POST',
    route: '/api/keys',
    ok: 201,
    allowed: ALL,
    prepare: async () => ({ path: '/api/keys', body: { name: 'mine' } }),
  },
  { method: 'GET', route: '/api/keys', ok: 200, allowed: ALL, prepare: async () => ({ path: '/api/keys' }) },
  {
    method: 'DELETE',
    route: '/api/keys/{id}',
    ok: 204,
    allowed: ALL,
    prepare: async (ctx) => ({ path: `/api/keys/${await ownKeyId(ctx)}` }),
  },
  {
    method: 'PATCH',
    route: '/api/keys/{id}',
    ok: 200,
    allowed: ALL,
    prepare: async (ctx) => ({ path: `/api/keys/${await ownKeyId(ctx)}`, body: { name: 'renamed' } }),
  },
  {
    method: 'GET',
    route: '/api/admin/users',
    ok: 200,
    allowed: ['admin'],
    prepare: async () => ({ path: '/api/admin/users' }),
  },
  {
    method: 'POST',
    route: '/api/admin/users',
    ok: 201,
    allowed: ['admin'],
    prepare: async () => ({
      path: '/api/admin/users',
      body: { email: `${newApiKey().slice(3, 15)}@example.com`, role: 'user' },
    }),
  },
  {
    method: 'GET',
    route: '/api/admin/users/{id}',
    ok: 200,
    allowed: ['admin'],
    prepare: async (ctx) => ({ path: `/api/admin/users/${ctx.callers.user.user.id}` }),
  },
  {
    method: 'PATCH',
    route: '/api/admin/users/{id}',
    ok: 200,
    allowed: ['admin'],
    prepare: async (ctx) => ({
      path: `/api/admin/users/${(await throwawayUser(ctx)).user.id}`,
      body: { name: 'Renamed' },
    }),
  },
  {
    method: 'DELETE',
    route: '/api/admin/users/{id}',
    ok: 204,
    allowed: ['admin'],
    prepare: async (ctx) => ({ path: `/api/admin/users/${(await throwawayUser(ctx)).user.id}` }),
  },
  {
    method: 'POST',
    route: '/api/admin/users/{id}/keys',
    ok: 201,
    allowed: ['admin'],
    prepare: async (ctx) => ({
      path: `/api/admin/users/${ctx.callers.user.user.id}/keys`,
      body: { name: 'for-user' },
    }),
  },
  {
    method: 'GET',
    route: '/api/admin/api-keys',
    ok: 200,
    allowed: ['admin'],
    prepare: async () => ({ path: '/api/admin/api-keys' }),
  },
  {
    method: 'DELETE',
    route: '/api/admin/api-keys/{id}',
    ok: 204,
    allowed: ['admin'],
    prepare: async (ctx) => ({ path: `/api/admin/api-keys/${(await throwawayUser(ctx)).keyId}` }),
  },
  {
    method: 'PATCH',
    route: '/api/admin/api-keys/{id}',
    ok: 200,
    allowed: ['admin'],
    prepare: async (ctx) => ({
      path: `/api/admin/api-keys/${(await throwawayUser(ctx)).keyId}`,
      body: { limits: { rpm: 30 } },
    }),
  },
  {
    method: 'GET',
    route: '/api/admin/audit',
    ok: 200,
    allowed: ['admin'],
    prepare: async () => ({ path: '/api/admin/audit' }),
  },
];

describe.each(MODES)('route × role matrix (%s mode)', (mode) => {
  const ctx = {} as Ctx;
  beforeAll(async () => {
    ctx.adminKey = newApiKey();
    // the prepares make many admin calls: no client limits in the way (this matrix is about permissions)
    ctx.gw = await startGateway(mode, {
      ADMIN_BOOTSTRAP_KEY: ctx.adminKey,
      RATE_LIMIT_KEY_RPM: '100000',
      RATE_LIMIT_USER_RPM: '100000',
    });
    ctx.callers = {} as Record<Role, UserWithKey>;
    // Sequential: embedded PGlite mis-handles concurrent extended-protocol queries (see the report).
    for (const role of ALL) ctx.callers[role] = await createUserWithKey(ctx.gw, ctx.adminKey, role);
  });
  afterAll(async () => {
    await ctx.gw?.close();
  });

  const cases = ROUTES.flatMap((r) =>
    CALLERS.map((caller) => [`${r.method} ${r.route}`, caller, r] as const),
  );

  it.each(cases)('%s as %s', async (_label, caller, route) => {
    const self = caller === 'none' ? null : ctx.callers[caller];
    const { path, body } = await route.prepare({ ...ctx, self });
    const json: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' };
    const headers: Record<string, string> = { ...(self?.headers ?? {}), ...json };
    const r = await getJson(`${ctx.gw.url}${path}`, {
      method: route.method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const expected = caller === 'none' ? 401 : route.allowed.includes(caller) ? route.ok : 403;
    expect(r.status, JSON.stringify(r.body)).toBe(expected);
    if (expected === 401) {
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
      expect(r.body.error).toMatchObject({
        type: 'authentication_error',
        message: 'Authorization header is missing',
      });
    }
    if (expected === 403)
      expect(r.body.error).toMatchObject({ type: 'permission_error', code: 'insufficient_permission' });
  });

  it('the table covers every route the auth module serves, and each is documented', async () => {
    const doc = (await getJson(`${ctx.gw.url}/docs-json`)).body;
    const documented = Object.entries(doc.paths as Record<string, Record<string, any>>)
      // /api/me/spend is the spend module's (test/spend); /api/admin/teams is covered in teams.e2e-spec.ts
      .filter(([path]) => /^\/api\/(me$|keys|admin\/(users|api-keys|audit))/.test(path))
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(documented.sort()).toEqual(ROUTES.map((r) => `${r.method} ${r.route}`).sort());
    for (const r of ROUTES) {
      const op = doc.paths[r.route][r.method.toLowerCase()];
      expect(op.summary, `${r.method} ${r.route} summary`).toBeTruthy();
      expect(op.tags?.length, `${r.method} ${r.route} tags`).toBeGreaterThan(0);
      expect(op.security, `${r.method} ${r.route} security`).toEqual(
        expect.arrayContaining([{ bearer: [] }, { 'api-key': [] }]),
      );
      expect(op.responses['401'], `${r.method} ${r.route} 401`).toBeDefined();
      if (r.route !== '/api/me') expect(op.responses['403'], `${r.method} ${r.route} 403`).toBeDefined();
      expect(op.responses[String(r.ok)], `${r.method} ${r.route} ${r.ok}`).toBeDefined();
    }
  });
});
