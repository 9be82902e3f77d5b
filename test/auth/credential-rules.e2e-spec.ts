import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { signHs256 } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';

const JWT_SECRET = 'credential-rules-secret-0123456789abcdef';

/**
 * Issue 13 item 9: the documented rules, pinned.
 *  - The auth scheme is case-insensitive (RFC 7235): `bearer`, `Bearer`, `BEARER` all work.
 *  - A JWT `role` claim, when present, is exactly one of admin | developer | user | viewer; anything
 *    else (`"ADMIN"`, `"superuser"`, a number) is a 401 invalid_token and provisions nobody.
 *  - Re-submitting an `invalid` upstream key's value (even the same value) clears `invalid`.
 */
describe('credential rules: scheme case, role claim, re-submitted upstream key', () => {
  let fx: RelayFixture;
  const chat = (authorization: string) =>
    getJson(`${fx.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });

  beforeAll(async () => {
    fx = await startRelay('embedded', {
      env: { JWT_SECRET },
      keys: [{ key: 'sk-resubmit-0000000001' }],
    });
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('the Bearer scheme is case-insensitive, for API keys and JWTs', async () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER']) {
      expect(
        (await getJson(`${fx.gw.url}/api/me`, { headers: { authorization: `${scheme} ${fx.adminKey}` } }))
          .status,
      ).toBe(200);
    }
    const token = signHs256(JWT_SECRET, { sub: 'idp|scheme-case', role: 'viewer' });
    expect(
      (await getJson(`${fx.gw.url}/api/me`, { headers: { authorization: `bearer ${token}` } })).status,
    ).toBe(200);
  });

  it('a role claim that is not exactly admin | developer | user | viewer is refused (401) and provisions nobody', async () => {
    const db = fx.gw.app.get(DataSource);
    for (const [i, role] of (['ADMIN', 'Admin', 'superuser', 42] as unknown[]).entries()) {
      const sub = `idp|bad-role-${i}`;
      const token = signHs256(JWT_SECRET, { sub, role: role as string });
      const r = await getJson(`${fx.gw.url}/api/admin/users`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect({ role, status: r.status, code: r.body?.error?.code, param: r.body?.error?.param }).toEqual({
        role,
        status: 401,
        code: 'invalid_token',
        param: null,
      });
      expect(r.body.error.message).toMatch(/role/);
      const rows = (await db.query(`SELECT count(*)::int AS n FROM users WHERE jwt_subject = $1`, [sub])) as {
        n: number;
      }[];
      expect(rows[0]!.n).toBe(0);
    }
    // No role claim at all: a plain user, as documented.
    const plain = signHs256(JWT_SECRET, { sub: 'idp|no-role' });
    const me = await getJson(`${fx.gw.url}/api/me`, { headers: { authorization: `Bearer ${plain}` } });
    expect(me.status).toBe(200);
    expect(me.body.role).toBe('user');
  });

  it('an invalid upstream key whose value is re-submitted unchanged is retried (invalid cleared)', async () => {
    const keyId = fx.keyIds['sk-resubmit-0000000001']!;
    fx.fake.when({ key: 'sk-resubmit-0000000001', times: 1, reply: FakeProvider.unauthorized() });
    const refused = await chat(`Bearer ${fx.adminKey}`);
    expect(refused.status).toBe(502);
    const before = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/provider-keys/${keyId}`);
    expect(before.body.state).toBe('invalid');
    // The admin fixed the account upstream and re-submits the very same value.
    const patched = await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/provider-keys/${keyId}`, {
      key: 'sk-resubmit-0000000001',
    });
    expect(patched.status).toBe(200);
    expect(patched.body.state).toBe('active');
    expect(patched.body.invalid_at).toBeNull();
    expect((await chat(`Bearer ${fx.adminKey}`)).status).toBe(200);
    const audit = await adminCall(fx.gw, fx.adminKey, 'GET', '/api/admin/audit?action=provider_key.update');
    expect(audit.body.data[0]).toMatchObject({ target_id: keyId });
    expect(audit.body.data[0].changes).toMatchObject({ invalid: { from: true, to: false } });
  });
});
