import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODES, startGateway, type TestGateway } from '../support/gateway.js';
import { adminClient, dataSource, leaseOf, newAdminKey, pool, seedProvider, type Admin } from './helpers.js';

const SECRETS = {
  a: 'sk-proj-AAAAaaaa1111plaintextvalueA0001',
  b: 'sk-proj-BBBBbbbb2222plaintextvalueB0002',
  c: 'sk-proj-CCCCcccc3333plaintextvalueC0003',
};

function flipSegmentByte(ciphertext: string, segment: number): string {
  const parts = ciphertext.split('.');
  const buf = Buffer.from(parts[segment]!, 'base64url');
  buf[0] = buf[0]! ^ 0x80;
  parts[segment] = buf.toString('base64url');
  return parts.join('.');
}

describe.each(MODES)('KeyPool admin API (%s mode)', (mode) => {
  let gw: TestGateway;
  let admin: Admin;
  const adminKey = newAdminKey();

  beforeAll(async () => {
    gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey });
    admin = adminClient(gw.url, adminKey);
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('providers: create, read, list, update, validation (400 naming the field), duplicate name (409), 404', async () => {
    const created = await admin.post('/api/admin/providers', {
      name: 'OpenAI',
      base_url: 'http://127.0.0.1:9/v1/',
      models: ['gpt-4o-mini', 'text-embedding-*'],
      rpm: 500,
      burst: 50,
      headers: { 'OpenAI-Organization': 'org-123' },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name: 'OpenAI',
      base_url: 'http://127.0.0.1:9/v1',
      models: ['gpt-4o-mini', 'text-embedding-*'],
      rpm: 500,
      burst: 50,
      timeout_ms: 60000,
      enabled: true,
      headers: { 'OpenAI-Organization': 'org-123' },
      source: 'api',
      keys: { total: 0, active: 0, cooling: 0, disabled: 0, broken: 0, invalid: 0 },
    });
    const id = created.body.id as string;
    expect((await admin.get(`/api/admin/providers/${id}`)).body.name).toBe('OpenAI');
    expect((await admin.get('/api/admin/providers')).body.map((p: any) => p.id)).toContain(id);

    const patched = await admin.patch(`/api/admin/providers/${id}`, {
      rpm: null,
      timeout_ms: 30000,
      models: ['gpt-4o'],
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ rpm: null, burst: 50, timeout_ms: 30000, models: ['gpt-4o'] });

    const dup = await admin.post('/api/admin/providers', {
      name: 'openai',
      base_url: 'http://127.0.0.1:9/v1',
    });
    expect(dup.status).toBe(409);
    expect(dup.body.error).toMatchObject({ code: 'provider_name_taken', param: 'name' });

    const cases: [Record<string, unknown>, string][] = [
      [{ name: 'x', base_url: 'ftp://example.com/' }, 'base_url'],
      [{ name: 'has space', base_url: 'http://127.0.0.1/' }, 'name'],
      [{ name: 'x', base_url: 'http://127.0.0.1/', timeout_ms: 5 }, 'timeout_ms'],
      [{ name: 'x', base_url: 'http://127.0.0.1/', models: ['ok', 'not ok'] }, 'models'],
      [{ name: 'x', base_url: 'http://127.0.0.1/', color: 'red' }, 'color'],
      [
        { name: 'x', base_url: 'http://127.0.0.1/', headers: { Authorization: 'Bearer x' } },
        'headers.Authorization',
      ],
      [{ name: 'x', base_url: 'http://127.0.0.1/', headers: { 'X-Evil': 'a\r\nb' } }, 'headers.X-Evil'],
      [{ base_url: 'http://127.0.0.1/' }, 'name'],
    ];
    for (const [body, param] of cases) {
      const r = await admin.post('/api/admin/providers', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.param, JSON.stringify(r.body)).toBe(param);
    }
    const badPatch = await admin.patch(`/api/admin/providers/${id}`, { name: null });
    expect(badPatch.status).toBe(400);
    expect(badPatch.body.error.param).toBe('name');

    for (const path of [
      '/api/admin/providers/00000000-0000-4000-8000-000000000000',
      '/api/admin/providers/not-a-uuid',
    ]) {
      const r = await admin.get(path);
      expect(r.status).toBe(404);
      expect(r.body.error.code).toBe('provider_not_found');
    }
  });

  it('keys: write-only value, masked in answers, no plaintext anywhere in the database, audited without the value', async () => {
    const { providerId, keyIds } = await seedProvider(
      admin,
      { name: `p-keys-${mode}`, base_url: 'http://127.0.0.1:9/v1' },
      [
        { label: 'a', key: SECRETS.a, priority: 1, max_rpm: 60 },
        { label: 'b', key: SECRETS.b, priority: 2, max_tpm: 1000, max_concurrent: 4 },
      ],
    );
    const list = await admin.get(`/api/admin/providers/${providerId}/keys`);
    expect(list.status).toBe(200);
    expect(list.body).toHaveLength(2);
    expect(list.body[0]).toMatchObject({
      id: keyIds[0],
      provider_id: providerId,
      label: 'a',
      masked: 'sk-…0001',
      priority: 1,
      max_rpm: 60,
      max_tpm: null,
      max_concurrent: null,
      enabled: true,
      state: 'active',
      cooldown_until: null,
      total_requests: 0,
      encryption_key_id: 'test1',
      window: { requests: 0, tokens: 0, in_flight: 0 },
    });
    expect(list.body[0]).not.toHaveProperty('key');
    expect(list.body[0]).not.toHaveProperty('ciphertext');
    expect(JSON.stringify(list.body)).not.toContain('plaintextvalue');

    const dup = await admin.post(`/api/admin/providers/${providerId}/keys`, {
      label: 'A',
      key: 'sk-other-123456789012345',
    });
    expect(dup.status).toBe(409);
    expect(dup.body.error.param).toBe('label');
    const bad = await admin.post(`/api/admin/providers/${providerId}/keys`, {
      label: 'c',
      key: 'has space in it',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe('key');
    expect(bad.body.error.message).not.toContain('has space');

    const patched = await admin.patch(`/api/admin/provider-keys/${keyIds[1]}`, {
      priority: 3,
      key: SECRETS.c,
      max_concurrent: null,
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ priority: 3, masked: 'sk-…0003', max_concurrent: null });
    const lease = leaseOf(await pool(gw).acquire(providerId, { excludeKeyIds: [keyIds[0]!] }));
    expect(lease.apiKey).toBe(SECRETS.c); // the new value is what the pool hands out
    expect(JSON.stringify(lease)).not.toContain(SECRETS.c); // a lease never serialises its secret
    await pool(gw).report(lease, { status: 200, tokens: 10 });

    // a dump of every table holds no plaintext key
    const ds = dataSource(gw);
    const tables = (await ds.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`,
    )) as { table_name: string }[];
    expect(tables.map((t) => t.table_name)).toEqual(
      expect.arrayContaining(['providers', 'provider_keys', 'key_usage_minutes', 'audit_log']),
    );
    let dump = '';
    for (const t of tables) dump += JSON.stringify(await ds.query(`SELECT * FROM "${t.table_name}"`));
    for (const secret of Object.values(SECRETS)) expect(dump).not.toContain(secret);
    expect(dump).not.toContain('plaintextvalue');

    expect((await admin.del(`/api/admin/provider-keys/${keyIds[1]}`)).status).toBe(204);
    expect((await admin.get(`/api/admin/provider-keys/${keyIds[1]}`)).status).toBe(404);
    expect((await admin.del(`/api/admin/providers/${providerId}`)).status).toBe(204);
    expect((await admin.get(`/api/admin/provider-keys/${keyIds[0]}`)).status).toBe(404);

    const audit = (await ds.query(
      `SELECT action, target_id, changes, actor_id FROM audit_log WHERE target_type IN ('provider', 'provider_key') ORDER BY created_at`,
    )) as { action: string; target_id: string; changes: Record<string, unknown>; actor_id: string | null }[];
    const actions = audit.map((a) => `${a.action}:${a.target_id}`);
    for (const expected of [
      `provider.create:${providerId}`,
      `provider_key.create:${keyIds[0]}`,
      `provider_key.create:${keyIds[1]}`,
      `provider_key.update:${keyIds[1]}`,
      `provider_key.delete:${keyIds[1]}`,
      `provider.delete:${providerId}`,
    ]) {
      expect(actions).toContain(expected);
    }
    const update = audit.find((a) => a.action === 'provider_key.update' && a.target_id === keyIds[1])!;
    expect(update.changes).toMatchObject({
      priority: { from: 2, to: 3 },
      value_replaced: { masked_from: 'sk-…0002', masked_to: 'sk-…0003' },
    });
    expect(audit.every((a) => a.actor_id !== null)).toBe(true);
    expect(JSON.stringify(audit)).not.toContain('plaintextvalue');
  });

  it('tampering one ciphertext byte (or its tag) marks only that key broken; the others keep serving', async () => {
    const { providerId, keyIds } = await seedProvider(
      admin,
      { name: `p-tamper-${mode}`, base_url: 'http://127.0.0.1:9/v1' },
      [
        { label: 'a', key: SECRETS.a },
        { label: 'b', key: SECRETS.b },
        { label: 'c', key: SECRETS.c },
      ],
    );
    const ds = dataSource(gw);
    const rows = (await ds.query(`SELECT id, ciphertext FROM provider_keys WHERE provider_id = $1`, [
      providerId,
    ])) as { id: string; ciphertext: string }[];
    const byId = new Map(rows.map((r) => [r.id, r.ciphertext]));
    await ds.query(`UPDATE provider_keys SET ciphertext = $2 WHERE id = $1`, [
      keyIds[1],
      flipSegmentByte(byId.get(keyIds[1]!)!, 2),
    ]); // ciphertext byte
    await ds.query(`UPDATE provider_keys SET ciphertext = $2 WHERE id = $1`, [
      keyIds[2],
      flipSegmentByte(byId.get(keyIds[2]!)!, 3),
    ]); // tag byte
    await pool(gw).invalidate(providerId); // what a restart (or any admin write) does

    const served = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const lease = leaseOf(await pool(gw).acquire(providerId));
      expect(lease.apiKey).toBe(SECRETS.a);
      served.add(lease.keyId);
      await pool(gw).report(lease, { status: 200 });
    }
    expect([...served]).toEqual([keyIds[0]]);
    const list = (await admin.get(`/api/admin/providers/${providerId}/keys`)).body as any[];
    const state = Object.fromEntries(list.map((k) => [k.id, k.state]));
    expect(state).toEqual({ [keyIds[0]!]: 'active', [keyIds[1]!]: 'broken', [keyIds[2]!]: 'broken' });
    expect(list.find((k) => k.id === keyIds[1]).broken_at).toEqual(expect.any(String));
    expect((await admin.get(`/api/admin/providers/${providerId}`)).body.keys).toMatchObject({
      total: 3,
      active: 1,
      broken: 2,
    });
    const states = (await pool(gw).keyStates())
      .filter((k) => k.providerId === providerId)
      .map((k) => k.state);
    expect(states.sort()).toEqual(['active', 'broken', 'broken']); // what metrics read

    // replacing the value heals a broken key
    const fixed = await admin.patch(`/api/admin/provider-keys/${keyIds[1]}`, { key: SECRETS.b });
    expect(fixed.body.state).toBe('active');
    expect(leaseOf(await pool(gw).acquire(providerId, { excludeKeyIds: [keyIds[0]!] })).apiKey).toBe(
      SECRETS.b,
    );
  });

  it('upstream 401 → invalid until an admin re-enables; enabling also ends a cooldown; usage per minute', async () => {
    const { providerId, keyIds } = await seedProvider(
      admin,
      { name: `p-usage-${mode}`, base_url: 'http://127.0.0.1:9/v1' },
      [{ label: 'only', key: SECRETS.a }],
    );
    const kp = pool(gw);
    for (let i = 0; i < 3; i++)
      await kp.report(leaseOf(await kp.acquire(providerId)), { status: 200, tokens: 100 });
    await kp.report(leaseOf(await kp.acquire(providerId)), { status: 500 });
    const r429 = await kp.report(leaseOf(await kp.acquire(providerId)), {
      status: 429,
      headers: { 'retry-after': '120' },
    });
    expect(r429.cooldownSource).toBe('retry-after');

    let key = (await admin.get(`/api/admin/provider-keys/${keyIds[0]}`)).body;
    expect(key.state).toBe('cooling');
    expect(Date.parse(key.cooldown_until) - Date.now()).toBeGreaterThan(110_000);
    expect(key.last_429_at).toEqual(expect.any(String));
    const refused = await kp.acquire(providerId);
    expect(!refused.ok && refused.refusal.message).toMatch(
      new RegExp(`^the only key of provider p-usage-${mode} is cooling down; it is ready in 1[12]\\d s$`),
    );

    key = (await admin.patch(`/api/admin/provider-keys/${keyIds[0]}`, { enabled: true })).body;
    expect(key).toMatchObject({ state: 'active', cooldown_until: null });
    const lease = leaseOf(await kp.acquire(providerId));
    expect((await kp.report(lease, { status: 401 })).invalidated).toBe(true);
    key = (await admin.get(`/api/admin/provider-keys/${keyIds[0]}`)).body;
    expect(key.state).toBe('invalid');
    const none = await kp.acquire(providerId);
    expect(!none.ok && none.refusal).toMatchObject({
      kind: 'no_usable_keys',
      code: 'no_usable_upstream_keys',
    });
    expect(!none.ok && none.refusal.message).toBe(`provider p-usage-${mode} has no usable keys (1 invalid)`);
    expect((await admin.patch(`/api/admin/provider-keys/${keyIds[0]}`, { enabled: true })).body.state).toBe(
      'active',
    );
    expect((await kp.acquire(providerId)).ok).toBe(true);

    const usage = await admin.get(`/api/admin/provider-keys/${keyIds[0]}/usage?minutes=5`);
    expect(usage.status).toBe(200);
    expect(usage.body.minutes).toBe(5);
    expect(usage.body.buckets).toHaveLength(5);
    expect(usage.body.totals).toEqual({ requests: 6, tokens: 300, rate_limited: 1, errors: 1 });
    expect(usage.body.window.in_flight).toBe(1); // the last lease is still out
    const last = usage.body.buckets.filter((b: any) => b.requests > 0);
    expect(last.length).toBeGreaterThanOrEqual(1);
    const after = (await admin.get(`/api/admin/provider-keys/${keyIds[0]}`)).body;
    expect(after).toMatchObject({ total_requests: 6, total_tokens: 300, last_used_at: expect.any(String) });
    for (const q of ['minutes=0', 'minutes=abc', 'minutes=20000']) {
      const r = await admin.get(`/api/admin/provider-keys/${keyIds[0]}/usage?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error.param).toBe('minutes');
    }
  });

  it('documents every route in OpenAPI with ErrorResponseDto errors', async () => {
    const doc = (await admin.get('/docs-json')).body;
    const routes: [string, string][] = [
      ['/api/admin/providers', 'get'],
      ['/api/admin/providers', 'post'],
      ['/api/admin/providers/{id}', 'get'],
      ['/api/admin/providers/{id}', 'patch'],
      ['/api/admin/providers/{id}', 'delete'],
      ['/api/admin/providers/{id}/keys', 'get'],
      ['/api/admin/providers/{id}/keys', 'post'],
      ['/api/admin/provider-keys/{id}', 'patch'],
      ['/api/admin/provider-keys/{id}', 'delete'],
      ['/api/admin/provider-keys/{id}/usage', 'get'],
    ];
    for (const [path, method] of routes) {
      const op = doc.paths[path]?.[method];
      expect(op, `${method} ${path}`).toBeDefined();
      expect(op.summary).toBeTruthy();
      expect(JSON.stringify(op.responses)).toContain('ErrorResponseDto');
    }
    expect(doc.components.schemas.ProviderKeyDto.properties).not.toHaveProperty('key');
  });
});
