import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUserWithKey } from '../support/auth.js';
import { MODES, startGateway, type TestGateway } from '../support/gateway.js';
import { adminClient, dataSource, leaseOf, newAdminKey, pool, seedProvider, type Admin } from './helpers.js';

// Custom header values that may hold a secret (docs/key-pool.md "Extra upstream headers").
const PORTKEY = 'pk-live-SECRETSECRETvalue1234abcd';
const ORG = 'org-7a7a7a7a7a';
const SHORT = 'beta1';

describe.each(MODES)(
  'provider header values are redacted for roles that may not edit providers (%s mode)',
  (mode) => {
    let gw: TestGateway;
    let admin: Admin;
    let viewer: Admin;
    let developer: Admin;
    let adminAsViewer: Admin;
    let providerId: string;
    const adminKey = newAdminKey();

    beforeAll(async () => {
      gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey });
      admin = adminClient(gw.url, adminKey);
      viewer = adminClient(gw.url, (await createUserWithKey(gw, adminKey, 'viewer')).key);
      developer = adminClient(gw.url, (await createUserWithKey(gw, adminKey, 'developer')).key);
      // An admin user calling with a key capped at viewer: the key's role decides.
      adminAsViewer = adminClient(
        gw.url,
        (await createUserWithKey(gw, adminKey, 'admin', { key: { role: 'viewer' } })).key,
      );
      ({ providerId } = await seedProvider(
        admin,
        {
          name: 'hdr-redact',
          base_url: 'http://127.0.0.1:9/v1',
          models: ['gpt-4o-mini'],
          headers: { 'X-Portkey-Config': PORTKEY, 'OpenAI-Organization': ORG, 'Anthropic-Beta': SHORT },
        },
        [{ label: 'a', key: 'sk-hdr-redaction-test-key-0001' }],
      ));
    });
    afterAll(async () => {
      await gw?.close();
    });

    const REDACTED = { 'X-Portkey-Config': 'pk-…abcd', 'OpenAI-Organization': '…7a', 'Anthropic-Beta': '…' };
    const CLEAR = { 'X-Portkey-Config': PORTKEY, 'OpenAI-Organization': ORG, 'Anthropic-Beta': SHORT };

    it('a viewer, a developer and a viewer-capped admin key read header names with previews, never the values', async () => {
      for (const caller of [viewer, developer, adminAsViewer]) {
        const one = await caller.get(`/api/admin/providers/${providerId}`);
        expect(one.status).toBe(200);
        expect(one.body.headers).toEqual(REDACTED);
        expect(one.body.headers_redacted).toBe(true);
        const list = await caller.get('/api/admin/providers');
        expect(list.status).toBe(200);
        const mine = list.body.find((p: { id: string }) => p.id === providerId);
        expect(mine.headers).toEqual(REDACTED);
        expect(mine.headers_redacted).toBe(true);
        const all = JSON.stringify([one.body, list.body]);
        for (const secret of [PORTKEY, ORG, SHORT, 'SECRETSECRET']) expect(all).not.toContain(secret);
      }
      // The status page names no header at all.
      const status = await viewer.get('/api/admin/status');
      expect(status.status).toBe(200);
      expect(JSON.stringify(status.body)).not.toContain('SECRETSECRET');
    });

    it('an admin reads the values in clear (to edit them), on GET, list, POST and PATCH answers; the relay still sends them', async () => {
      const one = await admin.get(`/api/admin/providers/${providerId}`);
      expect(one.body.headers).toEqual(CLEAR);
      expect(one.body.headers_redacted).toBe(false);
      const list = await admin.get('/api/admin/providers');
      expect(list.body.find((p: { id: string }) => p.id === providerId).headers).toEqual(CLEAR);
      const made = await admin.post('/api/admin/providers', {
        name: 'hdr-redact-2',
        base_url: 'http://127.0.0.1:9/v1',
        headers: { 'X-Tenant': 'tenant-secret-0123456789' },
      });
      expect(made.status).toBe(201);
      expect(made.body).toMatchObject({
        headers: { 'X-Tenant': 'tenant-secret-0123456789' },
        headers_redacted: false,
      });
      const patched = await admin.patch(`/api/admin/providers/${made.body.id}`, {
        headers: { 'X-Tenant': 'tenant-2' },
      });
      expect(patched.status).toBe(200);
      expect(patched.body).toMatchObject({ headers: { 'X-Tenant': 'tenant-2' }, headers_redacted: false });
      expect(leaseOf(await pool(gw).acquire(providerId)).headers).toEqual(CLEAR);
    });

    it('a PATCH or POST carrying a redacted preview is refused (400 redacted_header_value) and nothing changes', async () => {
      const before = (await admin.get(`/api/admin/providers/${providerId}`)).body;
      // What a viewer read, sent back whole (e.g. a script copying GET into PATCH), and one value of it.
      for (const headers of [REDACTED, { ...CLEAR, 'X-Portkey-Config': 'pk-…abcd' }]) {
        const r = await admin.patch(`/api/admin/providers/${providerId}`, { headers, rpm: 77 });
        expect(r.status).toBe(400);
        expect(r.body.error).toMatchObject({ code: 'redacted_header_value', type: 'invalid_request_error' });
        expect(r.body.error.param).toMatch(/^headers\./);
      }
      const after = (await admin.get(`/api/admin/providers/${providerId}`)).body;
      expect(after.headers).toEqual(CLEAR);
      expect(after.rpm).toBe(before.rpm);
      expect(after.updated_at).toBe(before.updated_at);
      expect(leaseOf(await pool(gw).acquire(providerId)).headers).toEqual(CLEAR);

      const created = await admin.post('/api/admin/providers', {
        name: 'hdr-redact-3',
        base_url: 'http://127.0.0.1:9/v1',
        headers: { 'X-Tenant': '…' },
      });
      expect(created.status).toBe(400);
      expect(created.body.error).toMatchObject({ code: 'redacted_header_value', param: 'headers.X-Tenant' });

      // A viewer may not write at all (403), placeholder or not.
      expect((await viewer.patch(`/api/admin/providers/${providerId}`, { headers: REDACTED })).status).toBe(
        403,
      );
    });

    it('audit entries of provider create/update hold header names only, never their values', async () => {
      const r = await admin.patch(`/api/admin/providers/${providerId}`, {
        headers: { ...CLEAR, 'X-Portkey-Config': 'pk-live-ROTATEDrotated9999zzzz' },
      });
      expect(r.status).toBe(200);
      const rows = (await dataSource(gw).query(
        `SELECT action, changes FROM audit_log WHERE target_type = 'provider' AND target_id = $1 ORDER BY created_at`,
        [providerId],
      )) as { action: string; changes: Record<string, unknown> }[];
      expect(rows.map((a) => a.action)).toEqual(
        expect.arrayContaining(['provider.create', 'provider.update']),
      );
      const update = rows.filter((a) => a.action === 'provider.update').at(-1)!;
      const names = update.changes.header_names as { from: string[]; to: string[] };
      // jsonb keeps its own key order: compare as sets.
      expect([...names.from].sort()).toEqual(Object.keys(CLEAR).sort());
      expect([...names.to].sort()).toEqual(Object.keys(CLEAR).sort());
      const text = JSON.stringify(rows);
      for (const secret of [PORTKEY, ORG, SHORT, 'ROTATED']) expect(text).not.toContain(secret);
      const api = await admin.get('/api/admin/audit?target_type=provider');
      expect(JSON.stringify(api.body)).not.toContain('SECRETSECRET');
      expect(JSON.stringify(api.body)).not.toContain('ROTATED');
    });

    it('documents the redaction in OpenAPI', async () => {
      const doc = (await admin.get('/docs-json')).body;
      const provider = doc.components.schemas.ProviderDto;
      expect(provider.required).toContain('headers_redacted');
      expect(provider.properties.headers.description).toContain('preview');
      expect(doc.paths['/api/admin/providers/{id}'].patch.description).toContain('redacted_header_value');
    });
  },
);
