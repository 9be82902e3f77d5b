import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoutesService } from '../../src/routing/services/routes.service.js';
import { createUserWithKey } from '../support/auth.js';
import { FaultProxy } from '../support/cluster.js';
import { TEST_POSTGRES_URL } from '../support/services.js';
import {
  getJson,
  isolatedEnv,
  MODES,
  startGateway,
  startGateways,
  type TestGateway,
} from '../support/gateway.js';
import { adminClient, newAdminKey, startOn, type Admin } from '../key-pool/helpers.js';

const routes = (gw: { app: TestGateway['app'] }) => gw.app.get(RoutesService);

/** Polls `check` until it holds (pub/sub is asynchronous), failing after a generous bound. */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function provider(admin: Admin, name: string): Promise<string> {
  const r = await admin.post('/api/admin/providers', { name, base_url: 'http://127.0.0.1:9/v1' });
  if (r.status !== 201) throw new Error(`creating provider failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}

describe.each(MODES)('Routes admin API (%s mode)', (mode) => {
  let gw: TestGateway;
  let admin: Admin;
  let p1: string;
  let p2: string;
  const adminKey = newAdminKey();

  beforeAll(async () => {
    gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey, RATE_LIMIT_KEY_RPM: '100000' });
    admin = adminClient(gw.url, adminKey);
    p1 = await provider(admin, 'alpha');
    p2 = await provider(admin, 'beta');
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('create, read, list, patch (targets replaced whole), delete; resolve sees every write at once', async () => {
    // warm the cache first: a write must drop it
    expect(await routes(gw).resolve('chat-default')).toBeNull();
    const created = await admin.post('/api/admin/routes', {
      model: 'chat-default',
      targets: [
        { provider_id: p1, model: 'gpt-4o-mini', weight: 3 },
        {
          provider_id: p2,
          model: 'llama',
          tier: 2,
          timeouts: { connect_ms: 2000, first_byte_ms: 10000 },
          breaker: 'open',
        },
      ],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({
      model: 'chat-default',
      max_attempts: 3,
      enabled: true,
      source: 'api',
      targets: [
        {
          provider_id: p1,
          provider: 'alpha',
          model: 'gpt-4o-mini',
          weight: 3,
          tier: 1,
          timeouts: null,
          breaker: 'auto',
        },
        {
          provider_id: p2,
          provider: 'beta',
          model: 'llama',
          weight: 1,
          tier: 2,
          timeouts: { connect_ms: 2000, first_byte_ms: 10000, total_ms: null, stream_total_ms: null },
          breaker: 'open',
        },
      ],
    });
    const id = created.body.id as string;
    expect(created.body.created_at).toEqual(expect.any(String));

    const resolved = await routes(gw).resolve('chat-default');
    expect(resolved).toMatchObject({
      id,
      model: 'chat-default',
      maxAttempts: 3,
      enabled: true,
      targets: [
        { providerId: p1, model: 'gpt-4o-mini', weight: 3, tier: 1, timeouts: null, breaker: 'auto' },
        {
          providerId: p2,
          model: 'llama',
          weight: 1,
          tier: 2,
          timeouts: { connectMs: 2000, firstByteMs: 10000, totalMs: null, streamTotalMs: null },
          breaker: 'open',
        },
      ],
    });
    expect(resolved!.createdAt).toBeInstanceOf(Date);
    expect((await routes(gw).enabledRoutes()).map((r) => r.model)).toEqual(['chat-default']);

    expect((await admin.get(`/api/admin/routes/${id}`)).body).toEqual(created.body);
    expect((await admin.get('/api/admin/routes')).body.map((r: any) => r.id)).toEqual([id]);

    const patched = await admin.patch(`/api/admin/routes/${id}`, {
      max_attempts: 2,
      targets: [{ provider_id: p2, model: 'llama', weight: 5 }],
    });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect(patched.body).toMatchObject({
      max_attempts: 2,
      targets: [{ provider_id: p2, provider: 'beta', model: 'llama', weight: 5, tier: 1, breaker: 'auto' }],
    });
    expect(patched.body.targets).toHaveLength(1);
    expect((await routes(gw).resolve('chat-default'))!.targets).toEqual([
      { providerId: p2, model: 'llama', weight: 5, tier: 1, timeouts: null, breaker: 'auto' },
    ]);

    // a disabled route resolves to nothing but is still listed
    expect((await admin.patch(`/api/admin/routes/${id}`, { enabled: false })).body.enabled).toBe(false);
    expect(await routes(gw).resolve('chat-default')).toBeNull();
    expect(await routes(gw).enabledRoutes()).toEqual([]);
    expect((await routes(gw).list()).map((r) => r.id)).toEqual([id]);
    await admin.patch(`/api/admin/routes/${id}`, { enabled: true, model: 'chat-renamed' });
    expect(await routes(gw).resolve('chat-default')).toBeNull();
    expect((await routes(gw).resolve('chat-renamed'))?.id).toBe(id);

    expect((await admin.del(`/api/admin/routes/${id}`)).status).toBe(204);
    expect(await routes(gw).resolve('chat-renamed')).toBeNull();
    expect((await admin.get(`/api/admin/routes/${id}`)).status).toBe(404);

    const audit = (await gw.app
      .get(DataSource)
      .query(
        `SELECT action, target_id, changes, actor_id FROM audit_log WHERE target_type = 'route' ORDER BY created_at`,
      )) as { action: string; target_id: string; changes: any; actor_id: string | null }[];
    expect(audit.map((a) => a.action)).toEqual([
      'route.create',
      'route.update',
      'route.update',
      'route.update',
      'route.delete',
    ]);
    expect(audit.every((a) => a.target_id === id && a.actor_id !== null)).toBe(true);
    expect(audit[1]!.changes).toMatchObject({
      max_attempts: { from: 3, to: 2 },
      targets: { to: [{ provider_id: p2, model: 'llama', weight: 5 }] },
    });
    expect(audit[3]!.changes).toMatchObject({ model: { from: 'chat-default', to: 'chat-renamed' } });
  });

  it('validation: 400 naming the field, for every rule', async () => {
    const t = (over: Record<string, unknown> = {}) => ({ provider_id: p1, model: 'm', ...over });
    const cases: [Record<string, unknown>, string][] = [
      [{ targets: [t()] }, 'model'],
      [{ model: '', targets: [t()] }, 'model'],
      [{ model: 'x'.repeat(256), targets: [t()] }, 'model'],
      [{ model: 'gpt-*', targets: [t()] }, 'model'],
      [{ model: 'a\tb', targets: [t()] }, 'model'],
      [{ model: 42, targets: [t()] }, 'model'],
      [{ model: 'v' }, 'targets'],
      [{ model: 'v', targets: [] }, 'targets'],
      [{ model: 'v', targets: Array.from({ length: 17 }, (_, i) => t({ model: `m${i}` })) }, 'targets'],
      [{ model: 'v', targets: [t(), t({ provider_id: 'nope' })] }, 'targets[1].provider_id'],
      [
        { model: 'v', targets: [t(), t({ provider_id: '00000000-0000-4000-8000-000000000000' })] },
        'targets[1].provider_id',
      ],
      [{ model: 'v', targets: [t({ model: '' })] }, 'targets[0].model'],
      [{ model: 'v', targets: [t({ model: 'x'.repeat(256) })] }, 'targets[0].model'],
      [{ model: 'v', targets: [t(), t({ model: 'n', weight: 0 })] }, 'targets[1].weight'],
      [{ model: 'v', targets: [t(), t({ model: 'n', weight: 1001 })] }, 'targets[1].weight'],
      [{ model: 'v', targets: [t(), t({ model: 'n', weight: 1.5 })] }, 'targets[1].weight'],
      [{ model: 'v', targets: [t({ tier: 0 })] }, 'targets[0].tier'],
      [{ model: 'v', targets: [t({ tier: 11 })] }, 'targets[0].tier'],
      [{ model: 'v', targets: [t(), t()] }, 'targets[1]'],
      [{ model: 'v', targets: [t({ timeouts: { connect_ms: 0 } })] }, 'targets[0].timeouts.connect_ms'],
      [{ model: 'v', targets: [t({ timeouts: { total_ms: 3_600_001 } })] }, 'targets[0].timeouts.total_ms'],
      [
        { model: 'v', targets: [t({ timeouts: { stream_total_ms: 'x' } })] },
        'targets[0].timeouts.stream_total_ms',
      ],
      [{ model: 'v', targets: [t({ timeouts: { idle_ms: 5 } })] }, 'targets[0].timeouts.idle_ms'],
      [{ model: 'v', targets: [t({ breaker: 'half_open' })] }, 'targets[0].breaker'],
      [{ model: 'v', targets: [t({ color: 'red' })] }, 'targets[0].color'],
      [{ model: 'v', targets: [t()], max_attempts: 0 }, 'max_attempts'],
      [{ model: 'v', targets: [t()], max_attempts: 11 }, 'max_attempts'],
      [{ model: 'v', targets: [t()], enabled: 'yes' }, 'enabled'],
      [{ model: 'v', targets: [t()], color: 'red' }, 'color'],
    ];
    for (const [body, param] of cases) {
      const r = await admin.post('/api/admin/routes', body);
      expect(r.status, JSON.stringify(body).slice(0, 200)).toBe(400);
      expect(r.body.error.param, JSON.stringify(r.body)).toBe(param);
    }
    // every valid edge value is accepted; nulls where allowed
    const ok = await admin.post('/api/admin/routes', {
      model: 'edge values',
      targets: [
        t({ weight: 1000, tier: 10, timeouts: { connect_ms: 1, total_ms: 3_600_000, first_byte_ms: null } }),
        t({ model: 'n', timeouts: null }),
      ],
      max_attempts: 10,
    });
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    const id = ok.body.id as string;
    for (const [body, param] of [
      [{ model: null }, 'model'],
      [{ targets: null }, 'targets'],
      [{ targets: [] }, 'targets'],
      [{ targets: [t({ weight: -1 })] }, 'targets[0].weight'],
      [{ max_attempts: null }, 'max_attempts'],
      [{ model: 'a*' }, 'model'],
    ] as [Record<string, unknown>, string][]) {
      const r = await admin.patch(`/api/admin/routes/${id}`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.param, JSON.stringify(r.body)).toBe(param);
    }
    expect((await admin.del(`/api/admin/routes/${id}`)).status).toBe(204);
  });

  it('404 for unknown or malformed ids; 409 route_exists for a second route with the same model', async () => {
    for (const path of [
      '/api/admin/routes/00000000-0000-4000-8000-000000000000',
      '/api/admin/routes/not-a-uuid',
    ]) {
      for (const r of [
        await admin.get(path),
        await admin.patch(path, { enabled: false }),
        await admin.del(path),
      ]) {
        expect(r.status).toBe(404);
        expect(r.body.error.code).toBe('route_not_found');
      }
    }
    const a = await admin.post('/api/admin/routes', {
      model: 'dup',
      targets: [{ provider_id: p1, model: 'm' }],
    });
    expect(a.status).toBe(201);
    const again = await admin.post('/api/admin/routes', {
      model: 'dup',
      targets: [{ provider_id: p2, model: 'm' }],
    });
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'route_exists', param: 'model' });
    const b = await admin.post('/api/admin/routes', {
      model: 'dup2',
      targets: [{ provider_id: p1, model: 'm' }],
    });
    const clash = await admin.patch(`/api/admin/routes/${b.body.id}`, { model: 'dup' });
    expect(clash.status).toBe(409);
    expect(clash.body.error.code).toBe('route_exists');
    await admin.del(`/api/admin/routes/${a.body.id}`);
    await admin.del(`/api/admin/routes/${b.body.id}`);
  });

  it('a deleted provider shows as provider: null; the route resolves as stored', async () => {
    const gone = await provider(admin, `gone-${mode}`);
    const r = await admin.post('/api/admin/routes', {
      model: 'orphan',
      targets: [
        { provider_id: gone, model: 'm' },
        { provider_id: p1, model: 'm' },
      ],
    });
    expect(r.status).toBe(201);
    expect((await admin.del(`/api/admin/providers/${gone}`)).status).toBe(204);
    const got = (await admin.get(`/api/admin/routes/${r.body.id}`)).body;
    expect(got.targets.map((t: any) => t.provider)).toEqual([null, 'alpha']);
    expect((await routes(gw).resolve('orphan'))!.targets.map((t) => t.providerId)).toEqual([gone, p1]);
    await admin.del(`/api/admin/routes/${r.body.id}`);
  });

  it('RBAC: developers and viewers read, only admins write (403)', async () => {
    const created = await admin.post('/api/admin/routes', {
      model: 'rbac',
      targets: [{ provider_id: p1, model: 'm' }],
    });
    const id = created.body.id as string;
    for (const role of ['developer', 'viewer', 'user'] as const) {
      const u = await createUserWithKey(gw, adminKey, role);
      const read = await getJson(`${gw.url}/api/admin/routes`, { headers: u.headers });
      expect(read.status, role).toBe(role === 'user' ? 403 : 200);
      const writes = [
        await getJson(`${gw.url}/api/admin/routes`, {
          method: 'POST',
          headers: u.jsonHeaders,
          body: JSON.stringify({ model: `by-${role}`, targets: [{ provider_id: p1, model: 'm' }] }),
        }),
        await getJson(`${gw.url}/api/admin/routes/${id}`, {
          method: 'PATCH',
          headers: u.jsonHeaders,
          body: JSON.stringify({ enabled: false }),
        }),
        await getJson(`${gw.url}/api/admin/routes/${id}`, { method: 'DELETE', headers: u.headers }),
      ];
      for (const w of writes) {
        expect(w.status, role).toBe(403);
        expect(w.body.error.type).toBe('permission_error');
      }
    }
    expect((await getJson(`${gw.url}/api/admin/routes`)).status).toBe(401);
    expect((await admin.get(`/api/admin/routes/${id}`)).body.enabled).toBe(true);
    await admin.del(`/api/admin/routes/${id}`);
  });

  it('documents the five operations in OpenAPI with descriptions and ErrorResponseDto errors', async () => {
    const doc = (await admin.get('/docs-json')).body;
    const ops: [string, string][] = [
      ['/api/admin/routes', 'get'],
      ['/api/admin/routes', 'post'],
      ['/api/admin/routes/{id}', 'get'],
      ['/api/admin/routes/{id}', 'patch'],
      ['/api/admin/routes/{id}', 'delete'],
    ];
    for (const [path, method] of ops) {
      const op = doc.paths[path]?.[method];
      expect(op, `${method} ${path}`).toBeDefined();
      expect(op.summary).toBeTruthy();
      expect(op.description).toBeTruthy();
      expect(JSON.stringify(op.responses)).toContain('ErrorResponseDto');
    }
    expect(doc.components.schemas.RouteDto.properties).toHaveProperty('max_attempts');
    expect(doc.components.schemas.RouteTargetInputDto.properties.weight.example).toBeDefined();
  });
});

describe('Routes cache across instances (distributed mode, one Redis)', () => {
  let close: () => Promise<void>;
  let a: TestGateway;
  let b: TestGateway;
  const adminKey = newAdminKey();

  beforeAll(async () => {
    const started = await startGateways(2, { ADMIN_BOOTSTRAP_KEY: adminKey, RATE_LIMIT_KEY_RPM: '100000' });
    [a, b] = started.gateways as [TestGateway, TestGateway];
    close = started.close;
  });
  afterAll(async () => {
    await close?.();
  });

  it('a create, patch and delete on A are seen by resolve on B (whose cache was warm)', async () => {
    const admin = adminClient(a.url, adminKey);
    const p = await provider(admin, 'shared');
    expect(await routes(b).resolve('x-alias')).toBeNull(); // B's cache is now loaded
    const created = await admin.post('/api/admin/routes', {
      model: 'x-alias',
      targets: [{ provider_id: p, model: 'm' }],
    });
    expect(created.status).toBe(201);
    await eventually(async () => (await routes(b).resolve('x-alias')) !== null, 'B to see the new route');

    await admin.patch(`/api/admin/routes/${created.body.id}`, { max_attempts: 7 });
    await eventually(
      async () => (await routes(b).resolve('x-alias'))?.maxAttempts === 7,
      'B to see the patched route',
    );

    await admin.del(`/api/admin/routes/${created.body.id}`);
    await eventually(async () => (await routes(b).resolve('x-alias')) === null, 'B to see the deletion');
  });
});

describe('Routes cache while Postgres is unreachable (distributed mode)', () => {
  let proxy: FaultProxy;
  let gw: TestGateway;
  let cleanup: () => Promise<void>;
  const adminKey = newAdminKey();

  beforeAll(async () => {
    proxy = await FaultProxy.start(TEST_POSTGRES_URL);
    const isolated = await isolatedEnv('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '100000',
    });
    cleanup = isolated.cleanup;
    gw = await startOn({ ...isolated.env, DATABASE_URL: proxy.url(isolated.env.DATABASE_URL!) });
  });
  afterAll(async () => {
    await proxy?.revive().catch(() => undefined);
    await gw?.close();
    await proxy?.close();
    await cleanup?.();
  });

  it('keeps serving the last loaded routes when a reload fails, and loads again once Postgres is back', async () => {
    const admin = adminClient(gw.url, adminKey);
    const p = await provider(admin, 'outage');
    const r = await admin.post('/api/admin/routes', {
      model: 'steady',
      targets: [{ provider_id: p, model: 'm' }],
    });
    expect(r.status).toBe(201);
    expect((await routes(gw).resolve('steady'))?.id).toBe(r.body.id);

    await proxy.kill();
    await routes(gw).invalidate(); // what another instance's write does: the next resolve must reload
    for (let i = 0; i < 3; i++) {
      expect((await routes(gw).resolve('steady'))?.id).toBe(r.body.id);
      expect((await routes(gw).enabledRoutes()).map((x) => x.model)).toEqual(['steady']);
    }
    await expect(routes(gw).list()).rejects.toThrow(); // uncached reads do go to Postgres

    await proxy.revive();
    let created: { status: number; body: any } | undefined;
    await eventually(async () => {
      created = await admin.post('/api/admin/routes', {
        model: 'after-outage',
        targets: [{ provider_id: p, model: 'm' }],
      });
      return created.status === 201;
    }, 'Postgres to answer again');
    expect((await routes(gw).resolve('after-outage'))?.id).toBe(created!.body.id);
    expect((await routes(gw).resolve('steady'))?.id).toBe(r.body.id);
  });
});
