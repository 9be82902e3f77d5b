/**
 * Route × role matrix over EVERY operation of the running app's OpenAPI document (/docs-json).
 *
 * The expectations below are written by hand from docs/auth.md's permission table (deliberately NOT
 * derived from src/common/permissions.ts, so a change of the code's matrix is caught). A route that
 * appears in /docs-json without an entry here fails "the table covers every documented route", and
 * so does an entry whose route disappeared.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import type { Role } from '../../src/common/principal.js';
import { bearer, createUserWithKey, newApiKey, type UserWithKey } from '../support/auth.js';
import { MODES } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';
import { call, documentedOperations, NO_CLIENT_LIMITS, ROLES, usersByRole } from './helpers.js';

type Caller = Role | 'none';
const CALLERS: Caller[] = [...ROLES, 'none'];
const ALL: Role[] = ROLES;
const PUBLIC = 'public' as const;

interface Ctx {
  fx: RelayFixture;
  callers: Record<Role, UserWithKey>;
  /** The caller's own user (null for an anonymous caller). */
  self: UserWithKey | null;
}

interface Prepared {
  path: string;
  body?: unknown;
}

interface RouteCase {
  /** Roles allowed (others with credentials → 403, no credentials → 401), or public (no auth at all). */
  allowed: Role[] | typeof PUBLIC;
  /** Status an allowed caller gets. */
  ok: number;
  prepare(ctx: Ctx): Promise<Prepared>;
}

const uniq = (p: string): string => `${p}-${randomBytes(4).toString('hex')}`;

async function throwawayProvider(ctx: Ctx): Promise<string> {
  const r = await adminCall(ctx.fx.gw, ctx.fx.adminKey, 'POST', '/api/admin/providers', {
    name: uniq('tmp'),
    base_url: ctx.fx.fake.baseUrl,
    models: ['tmp-model'],
  });
  if (r.status !== 201) throw new Error(`provider: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}

async function throwawayRoute(ctx: Ctx): Promise<string> {
  const r = await adminCall(ctx.fx.gw, ctx.fx.adminKey, 'POST', '/api/admin/routes', {
    model: uniq('tmp-route'),
    targets: [{ provider_id: ctx.fx.providerId, model: 'm' }],
  });
  if (r.status !== 201) throw new Error(`route: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}

/** A request-log row written directly (the relay writes them in batches, a second later). */
async function throwawayRequestRow(ctx: Ctx): Promise<string> {
  const rows = (await ctx.fx.gw.app
    .get(DataSource)
    .query(
      `WITH x AS (INSERT INTO request_log (request_id, endpoint, priority, status) VALUES ('matrix', 'chat.completions', 'normal', 200) RETURNING id) SELECT id FROM x`,
    )) as { id: string }[];
  return rows[0]!.id;
}

async function throwawayWebhook(ctx: Ctx): Promise<string> {
  const r = await adminCall(ctx.fx.gw, ctx.fx.adminKey, 'POST', '/api/admin/webhooks', {
    url: `${ctx.fx.fake.baseUrl}/hook`,
    events: ['*'],
  });
  if (r.status !== 201) throw new Error(`webhook: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}

async function throwawayUpstreamKey(ctx: Ctx): Promise<string> {
  const providerId = await throwawayProvider(ctx);
  const r = await adminCall(ctx.fx.gw, ctx.fx.adminKey, 'POST', `/api/admin/providers/${providerId}/keys`, {
    label: 'tmp',
    key: `sk-tmp-${randomBytes(8).toString('hex')}`,
  });
  if (r.status !== 201) throw new Error(`upstream key: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}

async function throwawayTeam(ctx: Ctx): Promise<string> {
  const r = await adminCall(ctx.fx.gw, ctx.fx.adminKey, 'POST', '/api/admin/teams', { name: uniq('team') });
  if (r.status !== 201) throw new Error(`team: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}

async function throwawayUser(ctx: Ctx): Promise<UserWithKey> {
  return createUserWithKey(ctx.fx.gw, ctx.fx.adminKey, 'user');
}

async function ownKeyId(ctx: Ctx): Promise<string> {
  const owner = ctx.self ?? (await throwawayUser(ctx));
  const r = await adminCall(ctx.fx.gw, ctx.fx.adminKey, 'POST', `/api/admin/users/${owner.user.id}/keys`, {
    name: 'to-revoke',
  });
  return r.body.id as string;
}

const staticPath = (path: string, body?: unknown) => async (): Promise<Prepared> => ({ path, body });

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

/** A stored response created with the caller's own key (only its creator may read it); a made-up id for callers that may not create one. */
async function ownResponse(ctx: Ctx): Promise<string> {
  if (!ctx.self) return 'resp_unknown';
  const r = await fetch(`${ctx.fx.gw.url}/v1/responses`, {
    method: 'POST',
    headers: { ...ctx.self.headers, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', input: 'hi' }),
  });
  if (r.status !== 200) return 'resp_unknown';
  return ((await r.json()) as { id: string }).id;
}

/** THE table: one entry per documented operation. */
const TABLE: Record<string, RouteCase> = {
  // ---- infrastructure (public) ----
  'GET /health': { allowed: PUBLIC, ok: 200, prepare: staticPath('/health') },
  'GET /health/live': { allowed: PUBLIC, ok: 200, prepare: staticPath('/health/live') },
  'GET /health/ready': { allowed: PUBLIC, ok: 200, prepare: staticPath('/health/ready') },
  'GET /metrics': { allowed: PUBLIC, ok: 200, prepare: staticPath('/metrics') },
  'GET /dashboard': { allowed: PUBLIC, ok: 200, prepare: staticPath('/dashboard') },
  'GET /dashboard/assets/dashboard.js': {
    allowed: PUBLIC,
    ok: 200,
    prepare: staticPath('/dashboard/assets/dashboard.js'),
  },
  'GET /dashboard/assets/console.js': {
    allowed: PUBLIC,
    ok: 200,
    prepare: staticPath('/dashboard/assets/console.js'),
  },
  'GET /dashboard/assets/dashboard.css': {
    allowed: PUBLIC,
    ok: 200,
    prepare: staticPath('/dashboard/assets/dashboard.css'),
  },
  'GET /dashboard/assets/chart.umd.js': {
    allowed: PUBLIC,
    ok: 200,
    prepare: staticPath('/dashboard/assets/chart.umd.js'),
  },

  // ---- identity and own keys ----
  'GET /api/me': { allowed: ALL, ok: 200, prepare: staticPath('/api/me') },
  'POST /api/keys': { allowed: ALL, ok: 201, prepare: staticPath('/api/keys', { name: 'mine' }) },
  'GET /api/keys': { allowed: ALL, ok: 200, prepare: staticPath('/api/keys') },
  'DELETE /api/keys/{id}': {
    allowed: ALL,
    ok: 204,
    prepare: async (ctx) => ({ path: `/api/keys/${await ownKeyId(ctx)}` }),
  },
  'PATCH /api/keys/{id}': {
    allowed: ALL,
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/keys/${await ownKeyId(ctx)}`, body: { name: 'renamed' } }),
  },

  // ---- users, API keys, audit (admin) ----
  'GET /api/admin/users': { allowed: ['admin'], ok: 200, prepare: staticPath('/api/admin/users') },
  'POST /api/admin/users': {
    allowed: ['admin'],
    ok: 201,
    prepare: async () => ({
      path: '/api/admin/users',
      body: { email: `${uniq('u')}@example.com`, role: 'user' },
    }),
  },
  'GET /api/admin/users/{id}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/admin/users/${ctx.callers.user.user.id}` }),
  },
  'PATCH /api/admin/users/{id}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({
      path: `/api/admin/users/${(await throwawayUser(ctx)).user.id}`,
      body: { name: 'Renamed' },
    }),
  },
  'DELETE /api/admin/users/{id}': {
    allowed: ['admin'],
    ok: 204,
    prepare: async (ctx) => ({ path: `/api/admin/users/${(await throwawayUser(ctx)).user.id}` }),
  },
  'POST /api/admin/users/{id}/keys': {
    allowed: ['admin'],
    ok: 201,
    prepare: async (ctx) => ({
      path: `/api/admin/users/${ctx.callers.user.user.id}/keys`,
      body: { name: 'for-user' },
    }),
  },
  'GET /api/admin/api-keys': { allowed: ['admin'], ok: 200, prepare: staticPath('/api/admin/api-keys') },
  'DELETE /api/admin/api-keys/{id}': {
    allowed: ['admin'],
    ok: 204,
    prepare: async (ctx) => ({ path: `/api/admin/api-keys/${(await throwawayUser(ctx)).keyId}` }),
  },
  'PATCH /api/admin/api-keys/{id}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({
      path: `/api/admin/api-keys/${(await throwawayUser(ctx)).keyId}`,
      body: { limits: { rpm: 30 }, budget: { limit_usd: 5, period: 'month' } },
    }),
  },
  'GET /api/admin/audit': { allowed: ['admin'], ok: 200, prepare: staticPath('/api/admin/audit') },
  // requests (a team_admin's own-team view: test/requests/requests.e2e-spec.ts)
  'GET /api/admin/requests': { allowed: ['admin'], ok: 200, prepare: staticPath('/api/admin/requests') },
  'GET /api/admin/requests/{id}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/admin/requests/${await throwawayRequestRow(ctx)}` }),
  },

  // ---- teams (admin; a team_admin's own-team access is covered in test/auth/teams.e2e-spec.ts) ----
  'GET /api/admin/teams': { allowed: ['admin'], ok: 200, prepare: staticPath('/api/admin/teams') },
  'POST /api/admin/teams': {
    allowed: ['admin'],
    ok: 201,
    prepare: async () => ({ path: '/api/admin/teams', body: { name: uniq('team') } }),
  },
  'GET /api/admin/teams/{id}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/admin/teams/${await throwawayTeam(ctx)}` }),
  },
  'PATCH /api/admin/teams/{id}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/admin/teams/${await throwawayTeam(ctx)}`, body: { weight: 2 } }),
  },
  'DELETE /api/admin/teams/{id}': {
    allowed: ['admin'],
    ok: 204,
    prepare: async (ctx) => ({ path: `/api/admin/teams/${await throwawayTeam(ctx)}` }),
  },
  'POST /api/admin/teams/{id}/members/{user_id}': {
    allowed: ['admin'],
    ok: 201,
    prepare: async (ctx) => ({
      path: `/api/admin/teams/${await throwawayTeam(ctx)}/members/${(await throwawayUser(ctx)).user.id}`,
      body: { role: 'member' },
    }),
  },
  'DELETE /api/admin/teams/{id}/members/{user_id}': {
    allowed: ['admin'],
    ok: 204,
    prepare: async (ctx) => {
      const team = await throwawayTeam(ctx);
      const user = await throwawayUser(ctx);
      const r = await adminCall(
        ctx.fx.gw,
        ctx.fx.adminKey,
        'POST',
        `/api/admin/teams/${team}/members/${user.user.id}`,
        {},
      );
      if (r.status !== 201) throw new Error(`member: ${r.status} ${JSON.stringify(r.body)}`);
      return { path: `/api/admin/teams/${team}/members/${user.user.id}` };
    },
  },

  // ---- rate limits (admin) ----
  'GET /api/admin/rate-limits/{subject}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/admin/rate-limits/key:${ctx.callers.user.keyId}` }),
  },
  'DELETE /api/admin/rate-limits/{subject}': {
    allowed: ['admin'],
    ok: 204,
    prepare: async (ctx) => ({ path: `/api/admin/rate-limits/key:${ctx.callers.user.keyId}` }),
  },

  // ---- spend budgets (admin) ----
  'GET /api/admin/budgets/{subject}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => {
      const user = await throwawayUser(ctx);
      const r = await adminCall(ctx.fx.gw, ctx.fx.adminKey, 'PATCH', `/api/admin/users/${user.user.id}`, {
        budget: { limit_usd: 5, period: 'month' },
      });
      if (r.status !== 200) throw new Error(`budget: ${r.status} ${JSON.stringify(r.body)}`);
      return { path: `/api/admin/budgets/user:${user.user.id}` };
    },
  },
  'DELETE /api/admin/budgets/{subject}': {
    allowed: ['admin'],
    ok: 204,
    prepare: async (ctx) => ({ path: `/api/admin/budgets/key:${ctx.callers.user.keyId}` }),
  },

  // ---- providers (read: admin, developer, viewer; write: admin) ----
  'GET /api/admin/providers': {
    allowed: ['admin', 'developer', 'viewer'],
    ok: 200,
    prepare: staticPath('/api/admin/providers'),
  },
  'POST /api/admin/providers': {
    allowed: ['admin'],
    ok: 201,
    prepare: async (ctx) => ({
      path: '/api/admin/providers',
      body: { name: uniq('new'), base_url: ctx.fx.fake.baseUrl, models: ['x-model'] },
    }),
  },
  'GET /api/admin/providers/{id}': {
    allowed: ['admin', 'developer', 'viewer'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/admin/providers/${ctx.fx.providerId}` }),
  },
  'PATCH /api/admin/providers/{id}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({
      path: `/api/admin/providers/${await throwawayProvider(ctx)}`,
      body: { timeout_ms: 7000 },
    }),
  },
  'DELETE /api/admin/providers/{id}': {
    allowed: ['admin'],
    ok: 204,
    prepare: async (ctx) => ({ path: `/api/admin/providers/${await throwawayProvider(ctx)}` }),
  },
  // ---- routes: the providers' permissions ----
  'GET /api/admin/routes': {
    allowed: ['admin', 'developer', 'viewer'],
    ok: 200,
    prepare: staticPath('/api/admin/routes'),
  },
  'POST /api/admin/routes': {
    allowed: ['admin'],
    ok: 201,
    prepare: async (ctx) => ({
      path: '/api/admin/routes',
      body: { model: uniq('route'), targets: [{ provider_id: ctx.fx.providerId, model: 'm' }] },
    }),
  },
  'GET /api/admin/routes/{id}': {
    allowed: ['admin', 'developer', 'viewer'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/admin/routes/${await throwawayRoute(ctx)}` }),
  },
  'PATCH /api/admin/routes/{id}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({
      path: `/api/admin/routes/${await throwawayRoute(ctx)}`,
      body: { max_attempts: 2 },
    }),
  },
  'DELETE /api/admin/routes/{id}': {
    allowed: ['admin'],
    ok: 204,
    prepare: async (ctx) => ({ path: `/api/admin/routes/${await throwawayRoute(ctx)}` }),
  },
  // ---- webhooks: provider_keys' permissions (a URL and a signing secret are credentials) ----
  'GET /api/admin/webhooks': {
    allowed: ['admin'],
    ok: 200,
    prepare: staticPath('/api/admin/webhooks'),
  },
  'POST /api/admin/webhooks': {
    allowed: ['admin'],
    ok: 201,
    prepare: async (ctx) => ({
      path: '/api/admin/webhooks',
      body: { url: `${ctx.fx.fake.baseUrl}/hook`, events: ['key.cooling'] },
    }),
  },
  'GET /api/admin/webhooks/{id}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/admin/webhooks/${await throwawayWebhook(ctx)}` }),
  },
  'DELETE /api/admin/webhooks/{id}': {
    allowed: ['admin'],
    ok: 204,
    prepare: async (ctx) => ({ path: `/api/admin/webhooks/${await throwawayWebhook(ctx)}` }),
  },
  'GET /api/admin/webhooks/{id}/deliveries': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/admin/webhooks/${await throwawayWebhook(ctx)}/deliveries` }),
  },
  // Upstream keys are provider_keys: admin only, even through the providers path.
  'GET /api/admin/providers/{id}/keys': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/admin/providers/${ctx.fx.providerId}/keys` }),
  },
  'POST /api/admin/providers/{id}/keys': {
    allowed: ['admin'],
    ok: 201,
    prepare: async (ctx) => ({
      path: `/api/admin/providers/${await throwawayProvider(ctx)}/keys`,
      body: { label: 'k', key: `sk-${randomBytes(8).toString('hex')}` },
    }),
  },

  // ---- upstream keys (admin) ----
  'POST /api/admin/provider-keys/heal': {
    allowed: ['admin'],
    ok: 200,
    prepare: staticPath('/api/admin/provider-keys/heal'),
  },
  'GET /api/admin/provider-keys/{id}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/api/admin/provider-keys/${Object.values(ctx.fx.keyIds)[0]}` }),
  },
  'PATCH /api/admin/provider-keys/{id}': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({
      path: `/api/admin/provider-keys/${await throwawayUpstreamKey(ctx)}`,
      body: { priority: 5 },
    }),
  },
  'DELETE /api/admin/provider-keys/{id}': {
    allowed: ['admin'],
    ok: 204,
    prepare: async (ctx) => ({ path: `/api/admin/provider-keys/${await throwawayUpstreamKey(ctx)}` }),
  },
  'GET /api/admin/provider-keys/{id}/usage': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({
      path: `/api/admin/provider-keys/${Object.values(ctx.fx.keyIds)[0]}/usage?minutes=5`,
    }),
  },

  // ---- adaptive (read: admin, developer; write: admin) ----
  'GET /api/admin/adaptive/keys': {
    allowed: ['admin', 'developer'],
    ok: 200,
    prepare: staticPath('/api/admin/adaptive/keys'),
  },
  'PATCH /api/admin/adaptive/keys/{id}/mode': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({
      path: `/api/admin/adaptive/keys/${await throwawayUpstreamKey(ctx)}/mode`,
      body: { enabled: false, fixed_limit: 3 },
    }),
  },
  'GET /api/admin/adaptive/keys/{id}/stats': {
    allowed: ['admin', 'developer'],
    ok: 200,
    prepare: async (ctx) => ({
      path: `/api/admin/adaptive/keys/${Object.values(ctx.fx.keyIds)[0]}/stats`,
    }),
  },
  'DELETE /api/admin/adaptive/keys/{id}/learning': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({
      path: `/api/admin/adaptive/keys/${await throwawayUpstreamKey(ctx)}/learning`,
    }),
  },
  'PATCH /api/admin/adaptive/keys/{id}/limit': {
    allowed: ['admin'],
    ok: 200,
    prepare: async (ctx) => ({
      path: `/api/admin/adaptive/keys/${await throwawayUpstreamKey(ctx)}/limit?limit=5`,
    }),
  },
  'GET /api/admin/adaptive/summary': {
    allowed: ['admin', 'developer'],
    ok: 200,
    prepare: staticPath('/api/admin/adaptive/summary'),
  },

  // ---- status (read: admin, developer, viewer) ----
  'GET /api/admin/spend': {
    allowed: ['admin', 'developer', 'viewer'],
    ok: 200,
    prepare: staticPath('/api/admin/spend'),
  },
  'GET /api/admin/spend/summary': {
    allowed: ['admin', 'developer', 'viewer'],
    ok: 200,
    prepare: staticPath('/api/admin/spend/summary'),
  },
  'GET /api/me/spend': { allowed: ALL, ok: 200, prepare: staticPath('/api/me/spend') },
  'GET /api/admin/status': {
    allowed: ['admin', 'developer', 'viewer'],
    ok: 200,
    prepare: staticPath('/api/admin/status'),
  },
  'GET /api/admin/status/stream': {
    allowed: ['admin', 'developer', 'viewer'],
    ok: 200,
    prepare: staticPath('/api/admin/status/stream'),
  },

  // ---- relay (admin, developer, user; never viewer) ----
  'POST /v1/chat/completions': {
    allowed: ['admin', 'developer', 'user'],
    ok: 200,
    prepare: staticPath('/v1/chat/completions', CHAT),
  },
  'POST /v1/completions': {
    allowed: ['admin', 'developer', 'user'],
    ok: 200,
    prepare: staticPath('/v1/completions', { model: 'gpt-4o-mini', prompt: 'hi' }),
  },
  'POST /v1/embeddings': {
    allowed: ['admin', 'developer', 'user'],
    ok: 200,
    prepare: staticPath('/v1/embeddings', { model: 'text-embedding-3-small', input: 'hi' }),
  },
  'POST /v1/responses': {
    allowed: ['admin', 'developer', 'user'],
    ok: 200,
    prepare: staticPath('/v1/responses', { model: 'gpt-4o-mini', input: 'hi' }),
  },
  // The fixture's only provider is openai-kind: served through the openai:messages translation
  // (test/relay/messages.e2e-spec.ts covers an anthropic one, translate-messages.e2e-spec.ts this).
  'POST /v1/messages': {
    allowed: ['admin', 'developer', 'user'],
    ok: 200,
    prepare: staticPath('/v1/messages', {
      model: 'gpt-4o-mini',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    }),
  },
  'GET /v1/responses/{id}': {
    allowed: ['admin', 'developer', 'user'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/v1/responses/${await ownResponse(ctx)}` }),
  },
  'GET /v1/responses/{id}/input_items': {
    allowed: ['admin', 'developer', 'user'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/v1/responses/${await ownResponse(ctx)}/input_items` }),
  },
  'DELETE /v1/responses/{id}': {
    allowed: ['admin', 'developer', 'user'],
    ok: 200,
    prepare: async (ctx) => ({ path: `/v1/responses/${await ownResponse(ctx)}` }),
  },
  'GET /v1/models': { allowed: ['admin', 'developer', 'user'], ok: 200, prepare: staticPath('/v1/models') },
  'GET /v1/models/{path}': {
    allowed: ['admin', 'developer', 'user'],
    ok: 200,
    prepare: staticPath('/v1/models/org/model-with-slash'),
  },
};

/** Routes with an id in the path, and how to reach them with a hostile id. */
const ID_ROUTES: [string, (id: string) => string][] = [
  ['DELETE', (id) => `/api/keys/${id}`],
  ['PATCH', (id) => `/api/keys/${id}`],
  ['GET', (id) => `/api/admin/users/${id}`],
  ['PATCH', (id) => `/api/admin/users/${id}`],
  ['DELETE', (id) => `/api/admin/users/${id}`],
  ['POST', (id) => `/api/admin/users/${id}/keys`],
  ['PATCH', (id) => `/api/admin/api-keys/${id}`],
  ['DELETE', (id) => `/api/admin/api-keys/${id}`],
  ['GET', (id) => `/api/admin/rate-limits/${id}`],
  ['DELETE', (id) => `/api/admin/rate-limits/${id}`],
  ['GET', (id) => `/api/admin/budgets/${id}`],
  ['DELETE', (id) => `/api/admin/budgets/${id}`],
  ['GET', (id) => `/api/admin/providers/${id}`],
  ['PATCH', (id) => `/api/admin/providers/${id}`],
  ['DELETE', (id) => `/api/admin/providers/${id}`],
  ['GET', (id) => `/api/admin/routes/${id}`],
  ['PATCH', (id) => `/api/admin/routes/${id}`],
  ['DELETE', (id) => `/api/admin/routes/${id}`],
  ['GET', (id) => `/api/admin/webhooks/${id}`],
  ['DELETE', (id) => `/api/admin/webhooks/${id}`],
  ['GET', (id) => `/api/admin/webhooks/${id}/deliveries`],
  ['GET', (id) => `/api/admin/providers/${id}/keys`],
  ['POST', (id) => `/api/admin/providers/${id}/keys`],
  ['GET', (id) => `/api/admin/provider-keys/${id}`],
  ['PATCH', (id) => `/api/admin/provider-keys/${id}`],
  ['DELETE', (id) => `/api/admin/provider-keys/${id}`],
  ['GET', (id) => `/api/admin/provider-keys/${id}/usage`],
  ['PATCH', (id) => `/api/admin/adaptive/keys/${id}/mode`],
  ['GET', (id) => `/api/admin/adaptive/keys/${id}/stats`],
  ['DELETE', (id) => `/api/admin/adaptive/keys/${id}/learning`],
  ['PATCH', (id) => `/api/admin/adaptive/keys/${id}/limit?limit=5`],
  ['GET', (id) => `/v1/models/${id}`],
];

const HOSTILE_IDS = [
  '00000000-0000-0000-0000-000000000000',
  'not-a-uuid',
  "1'%20OR%20'1'='1",
  '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  '%00',
  'a'.repeat(400),
  '-1',
  '%F0%9F%92%A9',
];

describe.each(MODES)('security: route × role matrix over /docs-json (%s mode)', (mode) => {
  const ctx = {} as Ctx;
  beforeAll(async () => {
    ctx.fx = await startRelay(mode, { env: NO_CLIENT_LIMITS });
    ctx.callers = await usersByRole(ctx.fx.gw, ctx.fx.adminKey);
  });
  afterAll(async () => {
    await ctx.fx?.close();
  });

  it('the table covers every documented route, and nothing else', async () => {
    const doc = (await call(`${ctx.fx.gw.url}/docs-json`)).body;
    const documented = documentedOperations(doc);
    expect(documented.length).toBeGreaterThan(40);
    const missing = documented.filter((op) => !(op in TABLE));
    const stale = Object.keys(TABLE).filter((op) => !documented.includes(op));
    expect(missing, 'documented routes without a matrix entry').toEqual([]);
    expect(stale, 'matrix entries for routes that are not documented').toEqual([]);
    // What the document says about auth agrees with the table.
    for (const [op, rc] of Object.entries(TABLE)) {
      const [method, path] = op.split(' ') as [string, string];
      const spec = doc.paths[path][method.toLowerCase()];
      if (rc.allowed === PUBLIC) {
        expect(spec.security ?? [], `${op} is public: no security scheme`).toEqual([]);
      } else {
        expect(spec.security, `${op} security`).toEqual(
          expect.arrayContaining([{ bearer: [] }, { 'api-key': [] }]),
        );
        expect(spec.responses['401'], `${op} documents 401`).toBeDefined();
        if (rc.allowed.length < ALL.length)
          expect(spec.responses['403'], `${op} documents 403`).toBeDefined();
      }
    }
  });

  const cases = Object.entries(TABLE).flatMap(([op, rc]) =>
    CALLERS.map((caller) => [op, caller, rc] as const),
  );

  it.each(cases)('%s as %s', async (op, caller, rc) => {
    const self = caller === 'none' ? null : ctx.callers[caller];
    const { path, body } = await rc.prepare({ ...ctx, self });
    const method = op.split(' ')[0]!;
    const r = await call(`${ctx.fx.gw.url}${path}`, {
      method,
      headers: self ? bearer(self.key, false) : {},
      body,
    });
    const expected =
      rc.allowed === PUBLIC ? rc.ok : caller === 'none' ? 401 : rc.allowed.includes(caller) ? rc.ok : 403;
    expect(r.status, `${op} as ${caller}: ${r.text.slice(0, 300)}`).toBe(expected);
    expect(r.headers.get('x-request-id')).toBeTruthy();
    if (expected === 401) {
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
      expect(r.body.error).toMatchObject({
        type: 'authentication_error',
        code: 'missing_credentials',
        request_id: r.headers.get('x-request-id'),
      });
    }
    if (expected === 403) {
      expect(r.body.error).toMatchObject({ type: 'permission_error', code: 'insufficient_permission' });
      // A refusal says nothing about the resource itself.
      expect(JSON.stringify(r.body)).not.toMatch(/sk-|key_hash|ciphertext/);
    }
  });

  it('a refused write changes nothing (viewer DELETE provider / PATCH user → 403, resource intact)', async () => {
    const viewer = ctx.callers.viewer;
    const del = await call(`${ctx.fx.gw.url}/api/admin/providers/${ctx.fx.providerId}`, {
      method: 'DELETE',
      headers: viewer.headers,
    });
    expect(del.status).toBe(403);
    const patch = await call(`${ctx.fx.gw.url}/api/admin/users/${viewer.user.id}`, {
      method: 'PATCH',
      headers: viewer.headers,
      body: { role: 'admin' },
    });
    expect(patch.status).toBe(403);
    const provider = await adminCall(
      ctx.fx.gw,
      ctx.fx.adminKey,
      'GET',
      `/api/admin/providers/${ctx.fx.providerId}`,
    );
    expect(provider.status).toBe(200);
    const me = await call(`${ctx.fx.gw.url}/api/me`, { headers: viewer.headers });
    expect(me.body).toMatchObject({ role: 'viewer', user_role: 'viewer' });
  });

  it('ownership: another user’s API key answers 404 exactly like a missing one, and is untouched', async () => {
    const alice = await createUserWithKey(ctx.fx.gw, ctx.fx.adminKey, 'developer');
    const bob = await createUserWithKey(ctx.fx.gw, ctx.fx.adminKey, 'developer');
    const other = await call(`${ctx.fx.gw.url}/api/keys/${alice.keyId}`, {
      method: 'DELETE',
      headers: bob.headers,
    });
    const missing = await call(
      `${ctx.fx.gw.url}/api/keys/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`,
      {
        method: 'DELETE',
        headers: bob.headers,
      },
    );
    expect(other.status).toBe(404);
    expect(missing.status).toBe(404);
    expect({ ...other.body.error, request_id: null }).toEqual({ ...missing.body.error, request_id: null });
    expect(JSON.stringify(other.body)).not.toContain(alice.user.id);
    // Alice's key still works, Bob's list shows only Bob's keys.
    expect((await call(`${ctx.fx.gw.url}/api/me`, { headers: alice.headers })).status).toBe(200);
    const list = await call(`${ctx.fx.gw.url}/api/keys?include_revoked=true`, { headers: bob.headers });
    expect(list.status).toBe(200);
    expect(list.body.data.length).toBeGreaterThan(0);
    for (const k of list.body.data) expect(k.owner_id).toBe(bob.user.id);
    expect(list.body.data.map((k: { id: string }) => k.id)).not.toContain(alice.keyId);
    // The own-key routes take no owner from the query either.
    const sneaky = await call(`${ctx.fx.gw.url}/api/keys?user_id=${alice.user.id}`, { headers: bob.headers });
    expect(sneaky.status).toBe(400);
    // And the admin list is not reachable with a developer key.
    const adminList = await call(`${ctx.fx.gw.url}/api/admin/api-keys?user_id=${alice.user.id}`, {
      headers: bob.headers,
    });
    expect(adminList.status).toBe(403);
  });

  it('a key cannot raise its own role or priority: role above the creator → 403, urgent by a non-admin → 403', async () => {
    const user = ctx.callers.user;
    const up = await call(`${ctx.fx.gw.url}/api/keys`, {
      method: 'POST',
      headers: user.headers,
      body: { name: 'escalate', role: 'admin' },
    });
    expect([400, 403]).toContain(up.status);
    const urgent = await call(`${ctx.fx.gw.url}/api/keys`, {
      method: 'POST',
      headers: ctx.callers.developer.headers,
      body: { name: 'urgent', max_priority: 'urgent' },
    });
    expect(urgent.status).toBe(403);
    const keys = await call(`${ctx.fx.gw.url}/api/keys`, { headers: user.headers });
    expect(keys.body.data.map((k: { name: string }) => k.name)).not.toContain('escalate');
  });

  it('hostile path ids on every {id} route: 400/404, never 5xx, never echoed raw into headers', async () => {
    const problems: string[] = [];
    for (const [method, path] of ID_ROUTES) {
      for (const id of HOSTILE_IDS) {
        const body = method === 'PATCH' || method === 'POST' ? {} : undefined;
        const r = await call(`${ctx.fx.gw.url}${path(id)}`, {
          method,
          headers: bearer(ctx.fx.adminKey, false),
          body,
        });
        if (r.status >= 500 || r.status < 400)
          problems.push(`${method} ${path(id)} → ${r.status} ${r.text.slice(0, 120)}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('METRICS_TOKEN: a client API key or JWT-looking bearer does not open /metrics', async () => {
    const token = `mt_${randomBytes(16).toString('hex')}`;
    const { startGateway } = await import('../support/gateway.js');
    const adminKey = newApiKey();
    const gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey, METRICS_TOKEN: token });
    try {
      expect((await call(`${gw.url}/metrics`)).status).toBe(401);
      expect((await call(`${gw.url}/metrics`, { headers: bearer(adminKey, false) })).status).toBe(401);
      expect((await call(`${gw.url}/metrics`, { headers: { 'x-api-key': token } })).status).toBe(401);
      expect((await call(`${gw.url}/metrics`, { headers: bearer(`${token}x`, false) })).status).toBe(401);
      const ok = await call(`${gw.url}/metrics`, { headers: bearer(token, false) });
      expect(ok.status).toBe(200);
      expect(ok.text).toContain('floodgate_');
    } finally {
      await gw.close();
    }
  });
});
