import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey, type UserWithKey } from '../support/auth.js';
import { getJson } from '../support/gateway.js';
import { startRelay, type RelayFixture } from '../support/relay.js';

/**
 * Issue 13 item 6: an admin write and its audit row commit together or not at all. The test's own
 * database gets a trigger that refuses every audit insert; every audited write must then answer an
 * error AND leave the data exactly as it was (no key nobody saw, no change no audit shows).
 */
describe('audited admin writes are atomic with their audit row', () => {
  let fx: RelayFixture;
  let db: pg.Client;
  let alice: UserWithKey;
  let victim: UserWithKey;
  let upstreamKeyId: string;

  /** Every row an admin write can touch (last_used_at moves with any authenticated call). */
  const snapshot = async (): Promise<string> => {
    const parts: string[] = [];
    for (const table of ['users', 'api_keys', 'providers', 'provider_keys', 'adaptive_key_state']) {
      const rows = await db.query(
        `SELECT (to_jsonb(t) - 'last_used_at')::text AS row FROM ${table} t ORDER BY 1`,
      );
      parts.push(`${table}:${rows.rows.map((r: { row: string }) => r.row).join('\n')}`);
    }
    return parts.join('\n---\n');
  };

  const call = (credential: string, method: string, path: string, body?: unknown) =>
    getJson(`${fx.gw.url}${path}`, {
      method,
      headers: bearer(credential, body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  beforeAll(async () => {
    fx = await startRelay('distributed', { keys: [{ key: 'sk-audit-1' }] });
    upstreamKeyId = fx.keyIds['sk-audit-1']!;
    alice = await createUserWithKey(fx.gw, fx.adminKey, 'developer');
    victim = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    db = new pg.Client({ connectionString: fx.gw.env.DATABASE_URL });
    await db.connect();
    await db.query(`CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'audit_log refuses inserts (test)'; END $$`);
    await db.query(
      `CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_audit()`,
    );
  });
  afterAll(async () => {
    await db?.end();
    await fx?.close();
  });

  const writes = (): [string, string, string, unknown, string?][] => [
    ['own key create', 'POST', '/api/keys', { name: 'unseen' }, alice.key],
    ['own key revoke', 'DELETE', `/api/keys/${alice.keyId}`, undefined, alice.key],
    ['admin key create', 'POST', `/api/admin/users/${victim.user.id}/keys`, { name: 'unseen' }],
    ['admin key revoke', 'DELETE', `/api/admin/api-keys/${victim.keyId}`, undefined],
    ['user create', 'POST', '/api/admin/users', { email: 'ghost@example.com', role: 'user' }],
    ['user update', 'PATCH', `/api/admin/users/${victim.user.id}`, { role: 'viewer' }],
    ['user delete', 'DELETE', `/api/admin/users/${victim.user.id}`, undefined],
    [
      'provider create',
      'POST',
      '/api/admin/providers',
      { name: 'ghost', base_url: 'http://127.0.0.1:9/v1', models: ['x'] },
    ],
    ['provider update', 'PATCH', `/api/admin/providers/${fx.providerId}`, { rpm: 7 }],
    ['provider delete', 'DELETE', `/api/admin/providers/${fx.providerId}`, undefined],
    [
      'provider key create',
      'POST',
      `/api/admin/providers/${fx.providerId}/keys`,
      { label: 'ghost', key: 'sk-ghost' },
    ],
    ['provider key update', 'PATCH', `/api/admin/provider-keys/${upstreamKeyId}`, { priority: 9 }],
    ['provider key value', 'PATCH', `/api/admin/provider-keys/${upstreamKeyId}`, { key: 'sk-new' }],
    ['provider key delete', 'DELETE', `/api/admin/provider-keys/${upstreamKeyId}`, undefined],
    [
      'adaptive mode',
      'PATCH',
      `/api/admin/adaptive/keys/${upstreamKeyId}/mode`,
      { enabled: false, fixed_limit: 3 },
    ],
    ['adaptive limit', 'PATCH', `/api/admin/adaptive/keys/${upstreamKeyId}/limit?limit=4`, undefined],
  ];

  it('every audited write fails whole when its audit row cannot be written', async () => {
    const leaks: string[] = [];
    for (const [what, method, path, body, credential] of writes()) {
      const before = await snapshot();
      const r = await call(credential ?? fx.adminKey, method, path, body);
      const after = await snapshot();
      if (r.status < 500) leaks.push(`${what}: answered ${r.status} without its audit row`);
      if (after !== before) leaks.push(`${what}: the data changed although its audit row was refused`);
    }
    expect(leaks).toEqual([]);
    // Nothing of the sort reached the audit log either (the trigger refused it).
    const audit = await db.query(`SELECT count(*)::int AS n FROM audit_log WHERE action LIKE '%'`);
    expect(audit.rows[0].n).toBeGreaterThan(0); // the setup's own writes are there
  });

  it('a rate-limit reset whose audit row is refused resets nothing', async () => {
    const subject = `key:${alice.keyId}`;
    // Consume some of alice's budget, then try to reset it.
    for (let i = 0; i < 3; i++) await call(alice.key, 'GET', '/api/me');
    const before = await call(fx.adminKey, 'GET', `/api/admin/rate-limits/${subject}`);
    const r = await call(fx.adminKey, 'DELETE', `/api/admin/rate-limits/${subject}`);
    const after = await call(fx.adminKey, 'GET', `/api/admin/rate-limits/${subject}`);
    expect(r.status).toBeGreaterThanOrEqual(500);
    const current = (b: { policies: { current: number }[] }) => b.policies.map((p) => p.current);
    expect(current(after.body)).toEqual(current(before.body));
    expect(Math.max(...current(after.body))).toBeGreaterThan(0);
  });

  it('writes succeed with their audit row once the audit log accepts inserts again', async () => {
    await db.query(`DROP TRIGGER refuse_audit ON audit_log`);
    const r = await call(alice.key, 'POST', '/api/keys', { name: 'seen' });
    expect(r.status).toBe(201);
    const audit = await db.query(`SELECT action FROM audit_log WHERE target_id = $1`, [r.body.id]);
    expect(audit.rows.map((x: { action: string }) => x.action)).toEqual(['api_key.create']);
  });
});
