/**
 * PATCH /api/admin/api-keys/{id} and PATCH /api/keys/{id} (docs/auth.md "Changing a key"): a key's
 * name, limits, budget, allowed models, max priority, team, body capture and expiry change after
 * creation, validated as at creation, audited, and applied at once — by the relay of this instance
 * (the cached credentials are dropped) and of every other instance (pub/sub), without a restart.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey, newApiKey, type UserWithKey } from '../support/auth.js';
import { pollUntil } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, MODES, startGateways, type TestGateway } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';

/** Output priced at 10 USD/Mtok: a request with max_tokens 5 reserves 50 µ$ (docs/spend.md). */
const PRICE = { input_per_mtok: 0, output_per_mtok: 10, cached_input_per_mtok: 0 };
const ENV = { RATE_LIMIT_KEY_RPM: '100000', RATE_LIMIT_USER_RPM: '100000', RATE_LIMIT_IP_RPM: '100000' };

function chat(url: string, key: string, model = 'gpt-4o-mini') {
  return getJson(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: bearer(key),
    body: JSON.stringify({ model, max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
  });
}

function patch(url: string, credential: string, path: string, body: unknown) {
  return getJson(`${url}${path}`, {
    method: 'PATCH',
    headers: bearer(credential),
    body: JSON.stringify(body),
  });
}

const MISSING = '00000000-0000-4000-8000-000000000000';

describe.each(MODES)('PATCH client API keys (%s)', (mode) => {
  let fx: RelayFixture;
  let url: string;
  const admin = (path: string, body: unknown) => patch(url, fx.adminKey, path, body);
  /** The key as listed, without last_used_at (using a key touches it a few seconds later). */
  const keyOf = async (id: string) => {
    const list = await adminCall(
      fx.gw,
      fx.adminKey,
      'GET',
      '/api/admin/api-keys?include_revoked=true&limit=500',
    );
    const { last_used_at: _, ...key } = list.body.data.find((k: { id: string }) => k.id === id);
    return key;
  };
  const auditFor = async (id: string) =>
    (
      await adminCall(fx.gw, fx.adminKey, 'GET', '/api/admin/audit?action=api_key.update&limit=200')
    ).body.data.filter((a: { target_id: string }) => a.target_id === id);

  beforeAll(async () => {
    fx = await startRelay(mode, {
      env: ENV,
      provider: { pricing: { 'gpt-4o-mini': PRICE, 'gpt-4o': PRICE } },
    });
    url = fx.gw.url;
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('limits: a lower rpm is enforced by the relay at once (the cached key is dropped); the answer has no key value; audited with from/to', async () => {
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    // served and cached with the gateway default rpm
    expect((await chat(url, u.key)).status).toBe(200);
    const r = await admin(`/api/admin/api-keys/${u.keyId}`, { limits: { rpm: 2 }, name: 'renamed' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({
      id: u.keyId,
      name: 'renamed',
      limits: { rpm: 2, tpm: null },
      revoked_at: null,
    });
    expect(r.body).not.toHaveProperty('key');
    expect(r.body).not.toHaveProperty('key_hash');
    expect(JSON.stringify(r.body)).not.toContain(u.key);
    // the key still authenticates (its value never changes); the new limit applies from the next
    // request (a limit this small is counted exactly, from the change on): two served, the third refused
    expect((await chat(url, u.key)).status).toBe(200);
    expect((await chat(url, u.key)).status).toBe(200);
    const refused = await chat(url, u.key);
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ type: 'rate_limit_error', param: 'key' });
    expect(refused.headers.get('x-ratelimit-limit')).toBe('2');

    // tpm alone: rpm is kept (limits merge); null clears one member
    const tpm = await admin(`/api/admin/api-keys/${u.keyId}`, { limits: { tpm: 5000 } });
    expect(tpm.body.limits).toEqual({ rpm: 2, tpm: 5000 });
    const cleared = await admin(`/api/admin/api-keys/${u.keyId}`, { limits: { rpm: null } });
    expect(cleared.body.limits).toEqual({ rpm: null, tpm: 5000 });
    expect((await chat(url, u.key)).status).toBe(200);

    const audit = await auditFor(u.keyId);
    expect(audit.length).toBe(3);
    const first = audit[audit.length - 1];
    expect(first).toMatchObject({ action: 'api_key.update', target_type: 'api_key' });
    expect(first.changes).toEqual({
      name: { from: 'user-key', to: 'renamed' },
      limits: { from: { rpm: null, tpm: null }, to: { rpm: 2, tpm: null } },
    });
    expect(JSON.stringify(audit)).not.toContain(u.key);
    // an unchanged value writes nothing
    const same = await admin(`/api/admin/api-keys/${u.keyId}`, { name: 'renamed' });
    expect(same.status).toBe(200);
    expect((await auditFor(u.keyId)).length).toBe(3);
  });

  it('budget: set → 429 budget_exceeded at once; cleared → served again', async () => {
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    expect((await chat(url, u.key)).status).toBe(200);
    const set = await admin(`/api/admin/api-keys/${u.keyId}`, {
      budget: { limit_usd: 0.00001, period: 'day' },
    });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    expect(set.body.budget).toEqual({ limit_usd: 0.00001, period: 'day' });
    // 50 µ$ reserved per request > 10 µ$
    const refused = await chat(url, u.key);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('budget_exceeded');
    expect(refused.headers.get('retry-after')).toBeTruthy();
    const cleared = await admin(`/api/admin/api-keys/${u.keyId}`, { budget: null });
    expect(cleared.status).toBe(200);
    expect(cleared.body.budget).toBeNull();
    expect((await chat(url, u.key)).status).toBe(200);
    const audit = await auditFor(u.keyId);
    expect(audit.map((a: { changes: Record<string, unknown> }) => a.changes.budget)).toEqual([
      { from: { limit_micros: 10, period: 'day' }, to: null },
      { from: null, to: { limit_micros: 10, period: 'day' } },
    ]);
  });

  it('allowed_models: narrowed → 403 model_not_allowed for the others, the allowed one served; null allows all again', async () => {
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    expect((await chat(url, u.key, 'gpt-4o')).status).toBe(200);
    const narrowed = await admin(`/api/admin/api-keys/${u.keyId}`, { allowed_models: ['gpt-4o-mini'] });
    expect(narrowed.body.allowed_models).toEqual(['gpt-4o-mini']);
    const refused = await chat(url, u.key, 'gpt-4o');
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('model_not_allowed');
    expect((await chat(url, u.key, 'gpt-4o-mini')).status).toBe(200);
    expect(
      (await admin(`/api/admin/api-keys/${u.keyId}`, { allowed_models: null })).body.allowed_models,
    ).toBeNull();
    expect((await chat(url, u.key, 'gpt-4o')).status).toBe(200);
  });

  it('max_priority, expires_at, capture_bodies and team_id change too (admin)', async () => {
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    const r = await admin(`/api/admin/api-keys/${u.keyId}`, {
      max_priority: 'urgent',
      expires_at: '2031-01-01T00:00:00Z',
      capture_bodies: true,
      team_id: null,
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({
      max_priority: 'urgent',
      expires_at: '2031-01-01T00:00:00.000Z',
      capture_bodies: true,
      team_id: null,
    });
    // null restores the creation defaults / never
    const back = await admin(`/api/admin/api-keys/${u.keyId}`, {
      max_priority: null,
      expires_at: null,
      capture_bodies: null,
    });
    expect(back.body).toMatchObject({ max_priority: 'high', expires_at: null, capture_bodies: false });
  });

  it('a bad body is a 400 naming the field, as at creation, and writes nothing', async () => {
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user', { key: { limits: { rpm: 7 } } });
    const before = await keyOf(u.keyId);
    const cases: [unknown, string | null][] = [
      [{ limits: { rpm: 0 } }, 'limits.rpm'],
      [{ limits: { rpm: 1.5 } }, 'limits.rpm'],
      [{ limits: { tpm: 'many' } }, 'limits.tpm'],
      [{ limits: { burst: 3 } }, 'limits.burst'],
      [{ budget: { limit_usd: 1, period: 'year' } }, 'budget.period'],
      [{ budget: { limit_usd: 0.0000001, period: 'day' } }, 'budget.limit_usd'],
      [{ budget: { period: 'day' } }, 'budget.limit_usd'],
      [{ name: '' }, 'name'],
      [{ name: null }, 'name'],
      [{ name: 'x'.repeat(101) }, 'name'],
      [{ allowed_models: 'gpt-4o' }, 'allowed_models'],
      [{ allowed_models: [''] }, 'allowed_models'],
      [{ max_priority: 'top' }, 'max_priority'],
      [{ expires_at: 'tomorrow' }, 'expires_at'],
      [{ expires_at: '2001-01-01T00:00:00Z' }, 'expires_at'],
      [{ team_id: 'not-a-uuid' }, 'team_id'],
      [{ team_id: randomUUID() }, 'team_id'],
      [{ capture_bodies: 'yes' }, 'capture_bodies'],
      [{ role: 'admin' }, 'role'],
      [{ key: newApiKey() }, 'key'],
      [{ key_hash: 'a'.repeat(64) }, 'key_hash'],
      [{ owner_id: MISSING }, 'owner_id'],
      [{}, null],
    ];
    for (const [body, param] of cases) {
      const r = await admin(`/api/admin/api-keys/${u.keyId}`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.type).toBe('invalid_request_error');
      expect(r.body.error.param, JSON.stringify(body)).toBe(param);
      if (param) expect(r.body.error.message).toContain(param.split('.').pop());
    }
    // the same parsing on the own-key route
    const own = await patch(url, u.key, `/api/keys/${u.keyId}`, { limits: { rpm: 0 } });
    expect(own.status).toBe(400);
    expect(own.body.error.param).toBe('limits.rpm');
    expect(await keyOf(u.keyId)).toEqual(before);
    expect(await auditFor(u.keyId)).toEqual([]);
  });

  it('404 for an unknown or malformed id; 409 for a revoked key', async () => {
    for (const id of [MISSING, 'not-a-uuid']) {
      const r = await admin(`/api/admin/api-keys/${id}`, { name: 'x' });
      expect(r.status).toBe(404);
      expect(r.body.error).toMatchObject({
        type: 'invalid_request_error',
        code: 'api_key_not_found',
        param: 'id',
      });
    }
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    const revoked = await getJson(`${url}/api/admin/api-keys/${u.keyId}`, {
      method: 'DELETE',
      headers: bearer(fx.adminKey, false),
    });
    expect(revoked.status).toBe(204);
    const r = await admin(`/api/admin/api-keys/${u.keyId}`, { limits: { rpm: 5 } });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('api_key_revoked');
  });

  it('403 for a non-admin on the admin route; another user’s key on /api/keys/{id} answers 404 like a missing one, untouched', async () => {
    const alice = await createUserWithKey(fx.gw, fx.adminKey, 'developer');
    const bob = await createUserWithKey(fx.gw, fx.adminKey, 'developer');
    const before = await keyOf(alice.keyId);
    for (const caller of [alice, bob]) {
      const r = await patch(url, caller.key, `/api/admin/api-keys/${alice.keyId}`, { limits: { rpm: 100 } });
      expect(r.status).toBe(403);
      expect(r.body.error).toMatchObject({ type: 'permission_error', code: 'insufficient_permission' });
    }
    const other = await patch(url, bob.key, `/api/keys/${alice.keyId}`, { name: 'stolen' });
    const missing = await patch(url, bob.key, `/api/keys/${MISSING}`, { name: 'stolen' });
    expect(other.status).toBe(404);
    expect(missing.status).toBe(404);
    expect({ ...other.body.error, request_id: null }).toEqual({ ...missing.body.error, request_id: null });
    expect(await keyOf(alice.keyId)).toEqual(before);
  });

  it('own keys: a key may narrow itself but never raise its limits, models, priority or budget; urgent and capture_bodies are admin-only', async () => {
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'developer', {
      key: {
        limits: { rpm: 100, tpm: 1000 },
        allowed_models: ['gpt-4o-mini', 'gpt-4o'],
        max_priority: 'normal',
      },
    });
    const own = (body: unknown) => patch(url, u.key, `/api/keys/${u.keyId}`, body);
    const narrowed = await own({ limits: { rpm: 50 }, name: 'mine', allowed_models: ['gpt-4o-mini'] });
    expect(narrowed.status, JSON.stringify(narrowed.body)).toBe(200);
    expect(narrowed.body).toMatchObject({ name: 'mine', limits: { rpm: 50, tpm: 1000 } });
    // the key now has rpm 50 and only gpt-4o-mini: going back up is refused
    for (const [body, param] of [
      [{ limits: { rpm: 51 } }, 'limits.rpm'],
      [{ limits: null }, 'limits.rpm'],
      [{ limits: { tpm: 2000 } }, 'limits.tpm'],
      [{ allowed_models: ['gpt-4o-mini', 'gpt-4o'] }, 'allowed_models'],
      [{ allowed_models: null }, 'allowed_models'],
      [{ max_priority: 'high' }, 'max_priority'],
      [{ max_priority: 'urgent' }, 'max_priority'],
      [{ capture_bodies: true }, 'capture_bodies'],
    ] as const) {
      const r = await own(body);
      expect(r.status, JSON.stringify(body)).toBe(403);
      expect(r.body.error).toMatchObject({ type: 'permission_error', param });
    }
    // a second key of the same user, made by the admin with a budget: the key cannot lift its own budget
    const budgeted = await adminCall(fx.gw, fx.adminKey, 'POST', `/api/admin/users/${u.user.id}/keys`, {
      name: 'budgeted',
      budget: { limit_usd: 1, period: 'day' },
    });
    const selfBudget = (body: unknown) =>
      patch(url, budgeted.body.key, `/api/keys/${budgeted.body.id}`, body);
    for (const body of [
      { budget: null },
      { budget: { limit_usd: 2, period: 'day' } },
      { budget: { limit_usd: 1, period: 'week' } },
    ]) {
      const r = await selfBudget(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.param).toBe('budget');
    }
    const lower = await selfBudget({ budget: { limit_usd: 0.5, period: 'day' } });
    expect(lower.status).toBe(200);
    expect(lower.body.budget).toEqual({ limit_usd: 0.5, period: 'day' });
    // the first key is still what it was narrowed to
    expect(await keyOf(u.keyId)).toMatchObject({
      limits: { rpm: 50, tpm: 1000 },
      allowed_models: ['gpt-4o-mini'],
    });
  });

  it("a team_admin changes its own team's keys through the admin route, not another team's", async () => {
    const teamA = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/teams', {
      name: `a-${randomUUID()}`,
    });
    const teamB = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/teams', {
      name: `b-${randomUUID()}`,
    });
    const lead = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    const member = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    const outsider = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    const join = (team: string, who: UserWithKey, role: string) =>
      adminCall(fx.gw, fx.adminKey, 'POST', `/api/admin/teams/${team}/members/${who.user.id}`, { role });
    expect((await join(teamA.body.id, lead, 'team_admin')).status).toBe(201);
    expect((await join(teamA.body.id, member, 'member')).status).toBe(201);
    expect((await join(teamB.body.id, outsider, 'member')).status).toBe(201);
    const ok = await patch(url, lead.key, `/api/admin/api-keys/${member.keyId}`, { limits: { rpm: 30 } });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.limits.rpm).toBe(30);
    const foreign = await patch(url, lead.key, `/api/admin/api-keys/${outsider.keyId}`, {
      limits: { rpm: 30 },
    });
    expect(foreign.status).toBe(403);
    expect(foreign.body.error.type).toBe('permission_error');
    const urgent = await patch(url, lead.key, `/api/admin/api-keys/${member.keyId}`, {
      max_priority: 'urgent',
    });
    expect(urgent.status).toBe(403);
    expect(urgent.body.error.param).toBe('max_priority');
  });

  it('documents both routes in /docs-json with examples and error responses', async () => {
    const doc = (await getJson(`${url}/docs-json`)).body;
    for (const path of ['/api/admin/api-keys/{id}', '/api/keys/{id}']) {
      const op = doc.paths[path].patch;
      expect(op.description).toContain('every instance');
      expect(Object.keys(op.requestBody.content['application/json'].examples).length).toBeGreaterThan(2);
      for (const status of ['200', '400', '401', '403', '404', '409'])
        expect(op.responses[status], status).toBeDefined();
    }
  });
});

describe('PATCH on one instance applies on another without a restart (distributed)', () => {
  let fake: FakeProvider;
  let cluster: Awaited<ReturnType<typeof startGateways>>;
  let a: TestGateway;
  let b: TestGateway;
  const adminKey = newApiKey();

  beforeAll(async () => {
    fake = await FakeProvider.start();
    cluster = await startGateways(2, { ...ENV, ADMIN_BOOTSTRAP_KEY: adminKey });
    [a, b] = cluster.gateways as [TestGateway, TestGateway];
    const provider = await adminCall(a, adminKey, 'POST', '/api/admin/providers', {
      name: 'fake',
      base_url: fake.baseUrl,
      models: fake.models,
      pricing: { 'gpt-4o-mini': PRICE, 'gpt-4o': PRICE },
    });
    expect(provider.status, JSON.stringify(provider.body)).toBe(201);
    const key = await adminCall(a, adminKey, 'POST', `/api/admin/providers/${provider.body.id}/keys`, {
      label: 'k',
      key: 'sk-key-patch',
    });
    expect(key.status).toBe(201);
  });
  afterAll(async () => {
    await cluster?.close();
    await fake?.close();
  });

  it('allowed_models, rpm and budget changed on A are enforced by B, which had the key cached, within a second (cache TTL 5 s)', async () => {
    const u = await createUserWithKey(a, adminKey, 'user');
    expect((await chat(b.url, u.key, 'gpt-4o')).status).toBe(200);
    const narrowed = await patch(a.url, adminKey, `/api/admin/api-keys/${u.keyId}`, {
      allowed_models: ['gpt-4o-mini'],
    });
    expect(narrowed.status).toBe(200);
    const { ms } = await pollUntil(async () => (await chat(b.url, u.key, 'gpt-4o')).status === 403, {
      timeoutMs: 1000,
      intervalMs: 20,
      what: 'B refusing the model A disallowed',
    });
    console.log(`the key change reached instance B after ${ms.toFixed(0)} ms`);
    expect((await chat(b.url, u.key, 'gpt-4o-mini')).status).toBe(200);

    // a budget set on A: B refuses at once; cleared on A: B serves again
    expect(
      (
        await patch(a.url, adminKey, `/api/admin/api-keys/${u.keyId}`, {
          budget: { limit_usd: 0.00001, period: 'day' },
        })
      ).status,
    ).toBe(200);
    await pollUntil(async () => (await chat(b.url, u.key)).body?.error?.code === 'budget_exceeded', {
      timeoutMs: 1000,
      intervalMs: 20,
      what: 'B refusing over the budget set on A',
    });
    expect((await patch(a.url, adminKey, `/api/admin/api-keys/${u.keyId}`, { budget: null })).status).toBe(
      200,
    );
    await pollUntil(async () => (await chat(b.url, u.key)).status === 200, {
      timeoutMs: 1000,
      intervalMs: 20,
      what: 'B serving once the budget is cleared on A',
    });

    // the user's own route on B, rpm 1 for the key: A refuses the second request of the minute
    const own = await patch(b.url, u.key, `/api/keys/${u.keyId}`, { limits: { rpm: 1 } });
    expect(own.status, JSON.stringify(own.body)).toBe(200);
    await pollUntil(async () => (await chat(a.url, u.key)).status === 429, {
      timeoutMs: 1000,
      intervalMs: 20,
      what: 'A enforcing the rpm set on B',
    });
  });
});
