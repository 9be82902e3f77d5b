import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyCipher, providerKeyAad } from '../../src/key-pool/domain/key-cipher.js';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import { createUserWithKey, newApiKey } from '../support/auth.js';
import { getJson, MODES, startGateway, type TestGateway } from '../support/gateway.js';

/**
 * POST /api/admin/provider-keys/heal (added for `floodgate encryption rotate`): the start-up heal on
 * demand — re-encrypts rows sealed under an older ENCRYPTION_KEYS entry, marks undecryptable rows
 * broken (and drops them from the pool at once), recovers broken rows that decrypt again; admin only,
 * audited, documented.
 */

const NEW = { id: 'new', key: randomBytes(32) };
const OLD = { id: 'old', key: randomBytes(32) };
const LOST = { id: 'lost', key: randomBytes(32) };
const spec = (k: { id: string; key: Buffer }) => `${k.id}:${k.key.toString('base64')}`;

describe.each(MODES)('POST /api/admin/provider-keys/heal (%s)', (mode) => {
  let gw: TestGateway;
  const adminKey = newApiKey();
  const call = (method: string, path: string, body?: unknown, key: string | null = adminKey) =>
    getJson(`${gw.url}${path}`, {
      method,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  beforeAll(async () => {
    gw = await startGateway(mode, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      ENCRYPTION_KEYS: `${spec(NEW)},${spec(OLD)}`,
      KEY_HEAL_BATCH_SIZE: '2',
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('heals, breaks and recovers rows now, invalidates the pool, and is admin-only, audited and documented', async () => {
    const nothing = await call('POST', '/api/admin/provider-keys/heal');
    expect(nothing.status).toBe(200);
    expect(nothing.body).toEqual({ encryption_key_id: 'new', total: 0, healed: 0, recovered: 0, broken: 0 });

    const provider = await call('POST', '/api/admin/providers', {
      name: 'vault',
      base_url: 'http://127.0.0.1:9/v1',
      models: ['m'],
    });
    expect(provider.status).toBe(201);
    const secrets = [
      'sk-heal-one-0000000001',
      'sk-heal-two-0000000002',
      'sk-heal-three-000000003',
      'sk-heal-four-00000004',
    ];
    const ids: string[] = [];
    for (const [i, key] of secrets.entries()) {
      const r = await call('POST', `/api/admin/providers/${provider.body.id}/keys`, {
        label: `k${i}`,
        key,
        priority: i,
      });
      expect(r.status).toBe(201);
      ids.push(r.body.id);
    }
    const pool = gw.app.get(KeyPoolService);
    const first = await pool.acquire(provider.body.id);
    expect(first.ok && first.lease.apiKey).toBe(secrets[0]); // the candidate list is cached now
    if (first.ok) await pool.report(first.lease, { notSent: true });

    // rows sealed by an instance still on the old key; one under a key no instance has; one that
    // was broken while its key was missing and decrypts again
    const ds = gw.app.get(DataSource);
    const reseal = async (id: string, secret: string, key: typeof NEW, broken = false) => {
      const sealed = new KeyCipher([key]).encrypt(secret, providerKeyAad(id));
      await ds.query(
        `UPDATE provider_keys SET ciphertext = $2, key_id = $3, broken_at = ${broken ? 'now()' : 'NULL'} WHERE id = $1`,
        [id, sealed.ciphertext, key.id],
      );
    };
    await reseal(ids[0]!, secrets[0]!, LOST);
    await reseal(ids[1]!, secrets[1]!, OLD);
    await reseal(ids[2]!, secrets[2]!, OLD);
    await reseal(ids[3]!, secrets[3]!, OLD, true);

    const developer = await createUserWithKey(gw, adminKey, 'developer');
    expect((await call('POST', '/api/admin/provider-keys/heal', undefined, null)).status).toBe(401);
    const forbidden = await call('POST', '/api/admin/provider-keys/heal', undefined, developer.key);
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error.type).toBe('permission_error');

    const healed = await call('POST', '/api/admin/provider-keys/heal');
    expect(healed.status).toBe(200);
    expect(healed.body).toEqual({ encryption_key_id: 'new', total: 4, healed: 2, recovered: 1, broken: 1 });
    const rows = (await ds.query(`SELECT id, key_id, broken_at FROM provider_keys ORDER BY priority`)) as {
      id: string;
      key_id: string;
      broken_at: Date | null;
    }[];
    expect(rows.map((r) => [r.key_id, r.broken_at === null])).toEqual([
      ['lost', false],
      ['new', true],
      ['new', true],
      ['new', true],
    ]);

    // the broken key left the pool at once; the healed ones serve their original values
    const next = await pool.acquire(provider.body.id);
    expect(next.ok && next.lease.apiKey).toBe(secrets[1]);
    const states = await call('GET', `/api/admin/providers/${provider.body.id}/keys`);
    expect(states.body.map((k: { state: string }) => k.state)).toEqual([
      'broken',
      'active',
      'active',
      'active',
    ]);

    // repeating is harmless: only the broken row is looked at again
    expect((await call('POST', '/api/admin/provider-keys/heal')).body).toEqual({
      encryption_key_id: 'new',
      total: 1,
      healed: 0,
      recovered: 0,
      broken: 1,
    });

    const audit = await call('GET', '/api/admin/audit?action=provider_key.heal');
    expect(audit.body.data).toHaveLength(3);
    expect(audit.body.data[1]).toMatchObject({
      action: 'provider_key.heal',
      target_type: 'provider_key',
      target_id: null,
      actor_role: 'admin',
      changes: { encryption_key_id: 'new', total: 4, healed: 2, recovered: 1, broken: 1 },
    });

    const doc = (await call('GET', '/docs-json')).body;
    const op = doc.paths['/api/admin/provider-keys/heal']?.post;
    expect(op?.summary).toBeTruthy();
    expect(op.responses['200'].content['application/json'].schema.$ref).toBe(
      '#/components/schemas/HealReportDto',
    );
    expect(JSON.stringify(op.responses['401'])).toContain('ErrorResponseDto');
    expect(JSON.stringify(op.responses['403'])).toContain('ErrorResponseDto');
  });
});
