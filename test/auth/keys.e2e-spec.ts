import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { KEY_LOOKUP_SQL } from '../../src/auth/credential-verifier.js';
import { CredentialCache } from '../../src/auth/credential-cache.js';
import { UsageRecorder } from '../../src/auth/usage-recorder.js';
import { bearer, createUserWithKey, newApiKey, sha256Hex, type UserWithKey } from '../support/auth.js';
import { getJson, MODES, startGateway, type TestGateway } from '../support/gateway.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.each(MODES)('API keys: ownership, validation, storage, revocation (%s mode)', (mode) => {
  let gw: TestGateway;
  let db: DataSource;
  const adminKey = newApiKey();
  let alice: UserWithKey;
  let bob: UserWithKey;
  let viewer: UserWithKey;
  const rawKeys: string[] = [adminKey];
  /** Keys whose rows were deleted with their owner. */
  const deletedKeys = new Set<string>();

  const api = (path: string, init: RequestInit = {}): ReturnType<typeof getJson> =>
    getJson(`${gw.url}${path}`, init);
  const post = (path: string, credential: string, body: unknown): ReturnType<typeof getJson> =>
    api(path, { method: 'POST', headers: bearer(credential), body: JSON.stringify(body) });
  const countKeys = async (where: string, params: unknown[]): Promise<number> =>
    (
      (await db.query(`SELECT count(*)::int AS n FROM api_keys WHERE ${where}`, params)) as { n: number }[]
    )[0]!.n;

  beforeAll(async () => {
    gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey });
    db = gw.app.get(DataSource);
    alice = await createUserWithKey(gw, adminKey, 'developer', { email: `alice-${mode}@example.com` });
    bob = await createUserWithKey(gw, adminKey, 'user', { email: `bob-${mode}@example.com` });
    viewer = await createUserWithKey(gw, adminKey, 'viewer');
    rawKeys.push(alice.key, bob.key, viewer.key);
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('creates an own key: 201, the raw key once, snake_case settings, role ≤ owner', async () => {
    const r = await post('/api/keys', alice.key, {
      name: 'ci',
      role: 'user',
      limits: { rpm: 60, tpm: 1000 },
      allowed_models: ['gpt-4o-mini', 'meta-llama/*'],
      max_priority: 'normal',
      expires_at: '2099-01-01T00:00:00Z',
    });
    expect(r.status).toBe(201);
    rawKeys.push(r.body.key);
    expect(r.body.key).toMatch(/^fg_[A-Za-z0-9_-]{43}$/);
    expect(r.body).toMatchObject({
      name: 'ci',
      role: 'user',
      owner_id: alice.user.id,
      limits: { rpm: 60, tpm: 1000 },
      allowed_models: ['gpt-4o-mini', 'meta-llama/*'],
      max_priority: 'normal',
      expires_at: '2099-01-01T00:00:00.000Z',
      prefix: r.body.key.slice(0, 8),
      last4: r.body.key.slice(-4),
      revoked_at: null,
      last_used_at: null,
    });
    const listed = await api('/api/keys', { headers: bearer(alice.key, false) });
    const shown = listed.body.data.find((k: { id: string }) => k.id === r.body.id);
    expect(shown).toBeDefined();
    expect(shown.key).toBeUndefined();
    expect(JSON.stringify(listed.body)).not.toContain(r.body.key);
    const me = await api('/api/me', { headers: bearer(r.body.key, false) });
    expect(me.body).toMatchObject({
      id: alice.user.id,
      role: 'user',
      user_role: 'developer',
      method: 'api_key',
      api_key: {
        id: r.body.id,
        max_priority: 'normal',
        allowed_models: ['gpt-4o-mini', 'meta-llama/*'],
        limits: { rpm: 60, tpm: 1000 },
      },
    });
  });

  it('user A cannot list, see or revoke user B’s keys (404, like a key that does not exist)', async () => {
    const aliceList = await api('/api/keys', { headers: bearer(alice.key, false) });
    expect(aliceList.status).toBe(200);
    expect(aliceList.body.data.every((k: { owner_id: string }) => k.owner_id === alice.user.id)).toBe(true);
    expect(aliceList.body.data.map((k: { id: string }) => k.id)).not.toContain(bob.keyId);
    // The admin listing (which could show B's keys) is closed to A.
    expect(
      (await api(`/api/admin/api-keys?user_id=${bob.user.id}`, { headers: bearer(alice.key, false) })).status,
    ).toBe(403);
    const theirs = await api(`/api/keys/${bob.keyId}`, {
      method: 'DELETE',
      headers: bearer(alice.key, false),
    });
    const missing = await api(`/api/keys/${crypto.randomUUID()}`, {
      method: 'DELETE',
      headers: bearer(alice.key, false),
    });
    const garbage = await api(`/api/keys/not-a-uuid`, {
      method: 'DELETE',
      headers: bearer(alice.key, false),
    });
    for (const r of [theirs, missing, garbage]) {
      expect(r.status).toBe(404);
      expect(r.body.error).toMatchObject({
        type: 'invalid_request_error',
        code: 'api_key_not_found',
        message: 'API key not found',
      });
    }
    expect(await countKeys('id = $1 AND revoked_at IS NULL', [bob.keyId])).toBe(1);
    expect((await api('/api/me', { headers: bearer(bob.key, false) })).status).toBe(200);
  });

  it('a viewer cannot create keys for others (403), and nothing is written', async () => {
    const before = await countKeys('user_id = $1', [bob.user.id]);
    const r = await post(`/api/admin/users/${bob.user.id}/keys`, viewer.key, { name: 'sneaky' });
    expect(r.status).toBe(403);
    expect(r.body.error.type).toBe('permission_error');
    expect(await countKeys('user_id = $1', [bob.user.id])).toBe(before);
    // Nor through the own-keys route: there is no owner field to point at someone else.
    const viaOwn = await post('/api/keys', viewer.key, { name: 'sneaky', owner_id: bob.user.id });
    expect(viaOwn.status).toBe(400);
    expect(viaOwn.body.error.param).toBe('owner_id');
    expect(await countKeys('user_id = $1', [bob.user.id])).toBe(before);
  });

  it.each([
    [
      'top-level extra field',
      '/api/keys',
      { name: 'x1', role: 'user', owner_id: '00000000-0000-0000-0000-000000000000' },
      'owner_id',
    ],
    ['nested extra field', '/api/keys', { name: 'x2', limits: { rpm: 5, burst: 10 } }, 'limits.burst'],
    ['nested wrong type', '/api/keys', { name: 'x3', limits: { rpm: 'many' } }, 'limits.rpm'],
    ['nested not an object', '/api/keys', { name: 'x4', limits: 'lots' }, 'limits'],
    ['bad enum', '/api/keys', { name: 'x5', max_priority: 'asap' }, 'max_priority'],
    ['bad model list', '/api/keys', { name: 'x6', allowed_models: ['ok', 7] }, 'allowed_models'],
    ['past expiry', '/api/keys', { name: 'x7', expires_at: '2001-01-01T00:00:00Z' }, 'expires_at'],
    ['raw key in the body', '/api/keys', { name: 'x8', key: 'fg_' + 'a'.repeat(43) }, 'key'],
  ])('%s → 400 naming the field, nothing written', async (_name, path, body, param) => {
    const r = await post(path, alice.key, body);
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ type: 'invalid_request_error', param });
    expect(r.body.error.message).toContain(param);
    expect(await countKeys('name = $1', [(body as { name: string }).name])).toBe(0);
  });

  it('admin user writes: extra fields (top-level, and `role` where it does not belong) → 400, nothing written', async () => {
    const email = `extra-${mode}@example.com`;
    const r = await post('/api/admin/users', adminKey, { email, role: 'user', is_admin: true });
    expect(r.status).toBe(400);
    expect(r.body.error.param).toBe('is_admin');
    const rows = (await db.query(`SELECT 1 FROM users WHERE email = $1`, [email])) as unknown[];
    expect(rows).toHaveLength(0);
    const patch = await api(`/api/admin/users/${bob.user.id}`, {
      method: 'PATCH',
      headers: bearer(adminKey),
      body: JSON.stringify({ name: 'B', password: 'x' }),
    });
    expect(patch.status).toBe(400);
    expect(patch.body.error.param).toBe('password');
    const name = (await db.query(`SELECT name FROM users WHERE id = $1`, [bob.user.id])) as {
      name: string | null;
    }[];
    expect(name[0]!.name).toBeNull();
  });

  it('a key role above the creator is 403, above the owner 400; only admins grant urgent', async () => {
    expect((await post('/api/keys', bob.key, { name: 'up', role: 'developer' })).status).toBe(403);
    expect((await post('/api/keys', viewer.key, { name: 'up', role: 'user' })).status).toBe(403);
    const aboveOwner = await post(`/api/admin/users/${bob.user.id}/keys`, adminKey, {
      name: 'up',
      role: 'admin',
    });
    expect(aboveOwner.status).toBe(400);
    expect(aboveOwner.body.error.param).toBe('role');
    const urgentSelf = await post('/api/keys', alice.key, { name: 'fast', max_priority: 'urgent' });
    expect(urgentSelf.status).toBe(403);
    expect(urgentSelf.body.error.param).toBe('max_priority');
    const urgentByAdmin = await post(`/api/admin/users/${bob.user.id}/keys`, adminKey, {
      name: 'fast',
      max_priority: 'urgent',
    });
    expect(urgentByAdmin.status).toBe(201);
    rawKeys.push(urgentByAdmin.body.key);
    expect(urgentByAdmin.body).toMatchObject({ role: 'user', max_priority: 'urgent', owner_id: bob.user.id });
  });

  it('a limited key cannot mint a wider key for its owner', async () => {
    const limited = await post(`/api/admin/users/${alice.user.id}/keys`, adminKey, {
      name: 'limited',
      limits: { rpm: 10 },
      allowed_models: ['m1'],
    });
    rawKeys.push(limited.body.key);
    const wider = await post('/api/keys', limited.body.key, { name: 'wider', allowed_models: ['m1'] });
    expect(wider.status).toBe(403);
    expect(wider.body.error.param).toBe('limits.rpm');
    const otherModels = await post('/api/keys', limited.body.key, {
      name: 'wider',
      limits: { rpm: 5 },
      allowed_models: ['m2'],
    });
    expect(otherModels.status).toBe(403);
    const narrower = await post('/api/keys', limited.body.key, {
      name: 'narrower',
      limits: { rpm: 5 },
      allowed_models: ['m1'],
    });
    expect(narrower.status).toBe(201);
    rawKeys.push(narrower.body.key);
  });

  it('revoking a key rejects it at once (it was cached), idempotently; the owner’s other keys still work', async () => {
    const k = await post('/api/keys', bob.key, { name: 'short-lived' });
    rawKeys.push(k.body.key);
    expect((await api('/api/me', { headers: bearer(k.body.key, false) })).status).toBe(200);
    expect(
      (await api(`/api/keys/${k.body.id}`, { method: 'DELETE', headers: bearer(bob.key, false) })).status,
    ).toBe(204);
    const r = await api('/api/me', { headers: { 'x-api-key': k.body.key } });
    expect(r.status).toBe(401);
    expect(r.body.error).toMatchObject({ code: 'api_key_revoked', message: 'API key has been revoked' });
    expect(
      (await api(`/api/keys/${k.body.id}`, { method: 'DELETE', headers: bearer(bob.key, false) })).status,
    ).toBe(204);
    const listed = await api('/api/keys?include_revoked=true', { headers: bearer(bob.key, false) });
    expect(listed.body.data.find((x: { id: string }) => x.id === k.body.id).revoked_at).toEqual(
      expect.any(String),
    );
    const active = await api('/api/keys', { headers: bearer(bob.key, false) });
    expect(active.body.data.map((x: { id: string }) => x.id)).not.toContain(k.body.id);
    expect((await api('/api/me', { headers: bearer(bob.key, false) })).status).toBe(200);
  });

  it('an expired key → 401, even while cached', async () => {
    const k = await post('/api/keys', bob.key, {
      name: 'expiring',
      expires_at: new Date(Date.now() + 1500).toISOString(),
    });
    rawKeys.push(k.body.key);
    expect((await api('/api/me', { headers: bearer(k.body.key, false) })).status).toBe(200);
    await sleep(1600);
    const r = await api('/api/me', { headers: bearer(k.body.key, false) });
    expect(r.status).toBe(401);
    expect(r.body.error.message).toBe('API key has expired');
  });

  it('a disabled owner → all their keys 401 at once; enabled → back', async () => {
    const carol = await createUserWithKey(gw, adminKey, 'user');
    rawKeys.push(carol.key);
    expect((await api('/api/me', { headers: carol.headers })).status).toBe(200);
    expect(
      (
        await api(`/api/admin/users/${carol.user.id}`, {
          method: 'PATCH',
          headers: bearer(adminKey),
          body: JSON.stringify({ disabled: true }),
        })
      ).status,
    ).toBe(200);
    const r = await api('/api/me', { headers: carol.headers });
    expect(r.status).toBe(401);
    expect(r.body.error.message).toBe('User is disabled');
    await api(`/api/admin/users/${carol.user.id}`, {
      method: 'PATCH',
      headers: bearer(adminKey),
      body: JSON.stringify({ disabled: false }),
    });
    expect((await api('/api/me', { headers: carol.headers })).status).toBe(200);
  });

  it('lowering a user’s role caps their keys (cached or not) and is audited', async () => {
    const dev = await createUserWithKey(gw, adminKey, 'developer');
    rawKeys.push(dev.key);
    expect((await api('/api/me', { headers: dev.headers })).body.role).toBe('developer');
    const r = await api(`/api/admin/users/${dev.user.id}`, {
      method: 'PATCH',
      headers: bearer(adminKey),
      body: JSON.stringify({ role: 'user' }),
    });
    expect(r.status).toBe(200);
    expect((await api('/api/me', { headers: dev.headers })).body.role).toBe('user');
    const stored = (await db.query(`SELECT role FROM api_keys WHERE id = $1`, [dev.keyId])) as {
      role: string;
    }[];
    expect(stored[0]!.role).toBe('user');
    const audit = await api(`/api/admin/audit?action=user.update&target_type=user`, {
      headers: bearer(adminKey, false),
    });
    const entry = audit.body.data.find((e: { target_id: string }) => e.target_id === dev.user.id);
    expect(entry.changes).toMatchObject({ role: { from: 'developer', to: 'user' }, keys_capped: 1 });
  });

  it('the last enabled admin cannot be demoted, disabled or deleted (409)', async () => {
    const me = await api('/api/me', { headers: bearer(adminKey, false) });
    for (const body of [{ role: 'user' }, { disabled: true }]) {
      const r = await api(`/api/admin/users/${me.body.id}`, {
        method: 'PATCH',
        headers: bearer(adminKey),
        body: JSON.stringify(body),
      });
      expect(r.status).toBe(409);
      expect(r.body.error.code).toBe('last_admin');
    }
    expect(
      (await api(`/api/admin/users/${me.body.id}`, { method: 'DELETE', headers: bearer(adminKey, false) }))
        .status,
    ).toBe(409);
    expect((await api('/api/me', { headers: bearer(adminKey, false) })).body.role).toBe('admin');
  });

  it('users: duplicate email (any case) → 409; unknown id → 404; delete removes their keys', async () => {
    const dup = await post('/api/admin/users', adminKey, {
      email: `ALICE-${mode}@Example.com`,
      role: 'user',
    });
    expect(dup.status).toBe(409);
    expect(dup.body.error.param).toBe('email');
    expect(
      (await api(`/api/admin/users/${crypto.randomUUID()}`, { headers: bearer(adminKey, false) })).status,
    ).toBe(404);
    const dave = await createUserWithKey(gw, adminKey, 'user');
    rawKeys.push(dave.key);
    deletedKeys.add(dave.key);
    expect(
      (await api(`/api/admin/users/${dave.user.id}`, { method: 'DELETE', headers: bearer(adminKey, false) }))
        .status,
    ).toBe(204);
    expect(await countKeys('user_id = $1', [dave.user.id])).toBe(0);
    expect((await api('/api/me', { headers: dave.headers })).status).toBe(401);
  });

  it('every admin write is audited: actor, action, target, fields, ip, request id — never a key', async () => {
    const created = await post(`/api/admin/users/${bob.user.id}/keys`, adminKey, { name: 'audited' });
    rawKeys.push(created.body.key);
    const revoked = await api(`/api/admin/api-keys/${created.body.id}`, {
      method: 'DELETE',
      headers: bearer(adminKey, false),
    });
    expect(revoked.status).toBe(204);
    const log = await api(`/api/admin/audit?target_type=api_key&limit=500`, {
      headers: bearer(adminKey, false),
    });
    expect(log.status).toBe(200);
    const admin = await api('/api/me', { headers: bearer(adminKey, false) });
    const forKey = log.body.data.filter((e: { target_id: string }) => e.target_id === created.body.id);
    expect(forKey.map((e: { action: string }) => e.action).sort()).toEqual([
      'api_key.create',
      'api_key.revoke',
    ]);
    const create = forKey.find((e: { action: string }) => e.action === 'api_key.create');
    expect(create).toMatchObject({
      actor_id: admin.body.id,
      actor_role: 'admin',
      target_type: 'api_key',
      ip: '127.0.0.1',
      request_id: created.headers.get('x-request-id'),
      changes: { name: 'audited', owner_id: bob.user.id, role: 'user', prefix: created.body.key.slice(0, 8) },
    });
    const users = await api(`/api/admin/audit?target_type=user&limit=500`, {
      headers: bearer(adminKey, false),
    });
    const actions = new Set(users.body.data.map((e: { action: string }) => e.action));
    for (const a of ['user.create', 'user.update', 'user.delete']) expect(actions).toContain(a);
    const paged = await api(`/api/admin/audit?limit=1`, { headers: bearer(adminKey, false) });
    expect(paged.body.data).toHaveLength(1);
    expect(paged.body.next_before).toEqual(expect.any(String));
    expect((await api(`/api/admin/audit?limit=0`, { headers: bearer(adminKey, false) })).status).toBe(400);
  });

  it('the database holds no raw key: api_keys (and the audit log) have hashes and prefixes only', async () => {
    expect(rawKeys.length).toBeGreaterThan(10);
    const keys = JSON.stringify(await db.query(`SELECT * FROM api_keys`));
    const audit = JSON.stringify(await db.query(`SELECT * FROM audit_log`));
    const users = JSON.stringify(await db.query(`SELECT * FROM users`));
    for (const raw of rawKeys) {
      for (const dump of [keys, audit, users]) {
        expect(dump).not.toContain(raw);
        expect(dump).not.toContain(raw.slice(3)); // the secret part, without the fg_ prefix
        expect(dump).not.toContain(raw.slice(8, 30));
      }
    }
    const hashes = ((await db.query(`SELECT key_hash FROM api_keys`)) as { key_hash: string }[]).map(
      (r) => r.key_hash,
    );
    for (const raw of rawKeys.filter((k) => !deletedKeys.has(k))) expect(hashes).toContain(sha256Hex(raw));
  });

  it('key lookup is one indexed query on a miss and none on a hit; last_used_at is batched', async () => {
    const cache = gw.app.get(CredentialCache);
    const usage = gw.app.get(UsageRecorder);
    await usage.flush();
    cache.clear();
    const spy = vi.spyOn(db, 'query');
    try {
      expect((await api('/api/keys', { headers: bearer(bob.key, false) })).status).toBe(200);
      const lookups = (): number => spy.mock.calls.filter(([sql]) => sql === KEY_LOOKUP_SQL).length;
      expect(lookups()).toBe(1);
      for (let i = 0; i < 20; i++) await api('/api/keys', { headers: bearer(bob.key, false) });
      expect(lookups()).toBe(1);
      const usageWrites = spy.mock.calls.filter(
        ([sql]) => /UPDATE (api_keys|users)/.test(String(sql)) && /last_(used|seen)_at/.test(String(sql)),
      );
      expect(usageWrites.length).toBeLessThanOrEqual(2); // at most one timer flush (one UPDATE per table), never 21
    } finally {
      spy.mockRestore();
    }
    await usage.flush();
    const row = (await db.query(`SELECT last_used_at FROM api_keys WHERE id = $1`, [bob.keyId])) as {
      last_used_at: Date | null;
    }[];
    expect(row[0]!.last_used_at).not.toBeNull();
    const user = (await db.query(`SELECT last_seen_at FROM users WHERE id = $1`, [bob.user.id])) as {
      last_seen_at: Date | null;
    }[];
    expect(user[0]!.last_seen_at).not.toBeNull();
    // The plan uses the unique hash index (seqscan off: tiny test tables would otherwise be scanned).
    const plan = (await db.transaction(async (m) => {
      await m.query('SET LOCAL enable_seqscan = off');
      return m.query(`EXPLAIN ${KEY_LOOKUP_SQL.replace('$1', `'${sha256Hex(bob.key)}'`)}`);
    })) as { 'QUERY PLAN': string }[];
    expect(plan.map((p) => p['QUERY PLAN']).join('\n')).toContain('IDX_api_keys_hash');
  });
});

describe('bootstrap admin with a generated key', () => {
  it('is created once, its key is printed once in the banner notes and works', async () => {
    const gw = await startGateway('embedded');
    try {
      const { StartupNotes } = await import('../../src/common/startup-notes.js');
      const notes = gw.app.get(StartupNotes).drain();
      const note = notes.find((n) => n.title.includes('admin'));
      expect(note).toBeDefined();
      const key = note!.lines.join('\n').match(/fg_[A-Za-z0-9_-]{43}/)?.[0];
      expect(key).toBeDefined();
      expect(note!.lines.join('\n')).toMatch(/shown only this once/);
      const me = await getJson(`${gw.url}/api/me`, { headers: bearer(key!, false) });
      expect(me.body).toMatchObject({ email: 'admin@floodgate.local', role: 'admin' });
      const { BootstrapAdmin } = await import('../../src/auth/bootstrap-admin.js');
      expect(await gw.app.get(BootstrapAdmin).ensureAdmin()).toMatchObject({
        created: false,
        generatedKey: null,
      });
      const admins = (await gw.app
        .get(DataSource)
        .query(`SELECT count(*)::int AS n FROM users WHERE role = 'admin'`)) as { n: number }[];
      expect(admins[0]!.n).toBe(1);
    } finally {
      await gw.close();
    }
  });
});
