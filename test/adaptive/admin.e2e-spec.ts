import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeProvider } from '../support/fake-provider.js';
import { MODES, startGateway, type TestGateway } from '../support/gateway.js';
import { adminClient, driveLoad, newAdminKey, seedProvider, services, type Admin } from './helpers.js';

/**
 * Seed 001's admin API (/api/admin/adaptive): every route answers with the seed's fields (the field
 * sets are compared exactly, `provider_id` replacing the seed's `endpoint_id`), its rules (fixed_limit
 * 1-100, enabled false without fixed_limit → 400, 404 "Key not found") and audit entries.
 */
const SEED_FIELDS = {
  listItem: [
    'id',
    'name',
    'provider_id',
    'is_adaptive',
    'max_concurrent',
    'effective_limit',
    'learned_max_concurrent',
    'concurrent_429_count',
    'rpm_429_count',
  ],
  mode: ['message', 'key_id', 'is_adaptive', 'max_concurrent', 'effective_limit'],
  stats: [
    'adaptive_mode',
    'max_concurrent',
    'effective_limit',
    'learned_limit',
    'concurrent_429_count',
    'rpm_429_count',
    'last_429_at',
    'last_429_type',
    'adjustment_count',
    'recent_adjustments',
  ],
  /** Seed's history records: timestamp, old_limit, new_limit, reason (+ extra data: in_flight). */
  adjustment: ['timestamp', 'old_limit', 'new_limit', 'reason', 'in_flight'],
  reset: ['message', 'key_id'],
  limit: ['message', 'key_id', 'is_adaptive', 'max_concurrent', 'previous_mode'],
  summary: [
    'total_adaptive_keys',
    'total_concurrent_429_errors',
    'total_rpm_429_errors',
    'total_adjustments',
    'recent_adjustments',
  ],
  summaryAdjustment: ['key_id', 'key_name', 'timestamp', 'old_limit', 'new_limit', 'reason', 'in_flight'],
};
const fields = (o: object) => Object.keys(o).sort();
const sorted = (list: string[]) => [...list].sort();

describe.each(MODES)('adaptive admin API (%s)', (mode) => {
  let gw: TestGateway;
  let fake: FakeProvider;
  let admin: Admin;
  const adminKey = newAdminKey();
  let providerId: string;
  let otherProviderId: string;
  let adaptiveKey: string;
  let fixedKey: string;
  let otherKey: string;

  beforeAll(async () => {
    fake = await FakeProvider.start({ maxConcurrent: 2 });
    fake.when({ reply: { delayMs: 10 } });
    gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey, KEY_COOLDOWN_DEFAULT_SECONDS: '1' });
    admin = adminClient(gw.url, adminKey);
    ({
      providerId,
      keyIds: [adaptiveKey, fixedKey],
    } = await seedProvider(admin, { name: 'p1', base_url: fake.baseUrl, models: ['gpt-4o-mini'] }, [
      { label: 'adaptive-1', key: 'sk-a-1' },
      { label: 'fixed-1', key: 'sk-f-1', max_concurrent: 7, enabled: false },
    ]));
    ({
      providerId: otherProviderId,
      keyIds: [otherKey],
    } = await seedProvider(admin, { name: 'p2', base_url: fake.baseUrl, models: ['other-model'] }, [
      { label: 'adaptive-2', key: 'sk-a-2' },
    ]));
    // some learning on the adaptive key: the fake refuses above 2 in flight
    await driveLoad({ instances: [services(gw)], providerId, clients: 6, requests: 60 });
    await services(gw).adaptive.flush();
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
  });

  it('GET /keys lists adaptive keys with the seed fields, filtered by provider_id', async () => {
    const all = await admin.get('/api/admin/adaptive/keys');
    expect(all.status).toBe(200);
    expect(all.body.map((k: { id: string }) => k.id).sort()).toEqual([adaptiveKey, otherKey].sort());
    for (const item of all.body) expect(fields(item)).toEqual(sorted(SEED_FIELDS.listItem));
    const one = await admin.get(`/api/admin/adaptive/keys?provider_id=${providerId}`);
    expect(one.body).toHaveLength(1);
    expect(one.body[0]).toMatchObject({
      id: adaptiveKey,
      name: 'adaptive-1',
      provider_id: providerId,
      is_adaptive: true,
      max_concurrent: null,
    });
    expect(one.body[0].learned_max_concurrent).toBe(2);
    expect(one.body[0].effective_limit).toBe(2);
    expect(one.body[0].concurrent_429_count).toBeGreaterThan(0);
    expect(
      (await admin.get(`/api/admin/adaptive/keys?provider_id=${otherProviderId}`)).body.map(
        (k: { id: string }) => k.id,
      ),
    ).toEqual([otherKey]);
    expect((await admin.get(`/api/admin/adaptive/keys?provider_id=${randomUUID()}`)).body).toEqual([]);
    const bad = await admin.get('/api/admin/adaptive/keys?provider_id=nope');
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe('provider_id');
  });

  it('GET /keys/{id}/stats answers the seed fields for adaptive and fixed keys', async () => {
    const a = await admin.get(`/api/admin/adaptive/keys/${adaptiveKey}/stats`);
    expect(a.status).toBe(200);
    expect(fields(a.body)).toEqual(sorted(SEED_FIELDS.stats));
    expect(a.body).toMatchObject({
      adaptive_mode: true,
      max_concurrent: null,
      learned_limit: 2,
      effective_limit: 2,
      last_429_type: 'concurrency',
    });
    expect(Date.parse(a.body.last_429_at)).toBeGreaterThan(Date.now() - 60_000);
    expect(a.body.adjustment_count).toBe(a.body.recent_adjustments.length);
    expect(a.body.adjustment_count).toBeGreaterThan(0);
    for (const adj of a.body.recent_adjustments) expect(fields(adj)).toEqual(sorted(SEED_FIELDS.adjustment));
    const f = await admin.get(`/api/admin/adaptive/keys/${fixedKey}/stats`);
    expect(f.body).toMatchObject({
      adaptive_mode: false,
      max_concurrent: 7,
      effective_limit: 7,
      learned_limit: null,
      adjustment_count: 0,
    });
  });

  it('GET /summary answers totals and the 10 most recent adjustments', async () => {
    const s = await admin.get('/api/admin/adaptive/summary');
    expect(s.status).toBe(200);
    expect(fields(s.body)).toEqual(sorted(SEED_FIELDS.summary));
    const stats = (await admin.get(`/api/admin/adaptive/keys/${adaptiveKey}/stats`)).body;
    expect(s.body).toMatchObject({
      total_adaptive_keys: 2,
      total_concurrent_429_errors: stats.concurrent_429_count,
      total_rpm_429_errors: 0,
      total_adjustments: stats.adjustment_count,
    });
    expect(s.body.recent_adjustments.length).toBe(Math.min(10, stats.adjustment_count));
    for (const adj of s.body.recent_adjustments)
      expect(fields(adj)).toEqual(sorted(SEED_FIELDS.summaryAdjustment));
    expect(s.body.recent_adjustments[0]).toMatchObject({ key_id: adaptiveKey, key_name: 'adaptive-1' });
  });

  it('PATCH /keys/{id}/mode toggles the mode with the seed fields and rules; audited', async () => {
    const toFixed = await admin.patch(`/api/admin/adaptive/keys/${otherKey}/mode`, {
      enabled: false,
      fixed_limit: 12,
    });
    expect(toFixed.status).toBe(200);
    expect(fields(toFixed.body)).toEqual(sorted(SEED_FIELDS.mode));
    expect(toFixed.body).toEqual({
      message: 'Switched to fixed limit mode; concurrency limit set to 12',
      key_id: otherKey,
      is_adaptive: false,
      max_concurrent: 12,
      effective_limit: 12,
    });
    expect((await admin.get(`/api/admin/provider-keys/${otherKey}`)).body.max_concurrent).toBe(12);
    const back = await admin.patch(`/api/admin/adaptive/keys/${otherKey}/mode`, { enabled: true });
    expect(back.body).toEqual({
      message: 'Switched to adaptive mode; the system learns and adjusts the concurrency limit automatically',
      key_id: otherKey,
      is_adaptive: true,
      max_concurrent: null,
      effective_limit: gw.config.adaptive.initialLimit,
    });
    // the learned value survives a round trip through fixed mode
    await admin.patch(`/api/admin/adaptive/keys/${adaptiveKey}/mode`, { enabled: false, fixed_limit: 3 });
    const again = await admin.patch(`/api/admin/adaptive/keys/${adaptiveKey}/mode`, { enabled: true });
    expect(again.body.effective_limit).toBe(2);

    const missing = await admin.patch(`/api/admin/adaptive/keys/${otherKey}/mode`, { enabled: false });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({
      param: 'fixed_limit',
      message: 'fixed_limit is required when disabling adaptive mode',
    });
    for (const bad of [0, 101, 2.5, 'x']) {
      const r = await admin.patch(`/api/admin/adaptive/keys/${otherKey}/mode`, {
        enabled: false,
        fixed_limit: bad,
      });
      expect(r.status).toBe(400);
      expect(r.body.error.param).toBe('fixed_limit');
    }
    expect(
      (await admin.patch(`/api/admin/adaptive/keys/${otherKey}/mode`, { fixed_limit: 3 })).body.error.param,
    ).toBe('enabled');
    expect(
      (await admin.patch(`/api/admin/adaptive/keys/${otherKey}/mode`, { enabled: true, extra: 1 })).status,
    ).toBe(400);

    const audit = await admin.get('/api/admin/audit?action=adaptive_key.mode');
    expect(audit.body.data.length).toBe(4);
    expect(
      audit.body.data.find((e: { target_id: string }) => e.target_id === otherKey).changes,
    ).toBeDefined();
  });

  it('PATCH /keys/{id}/limit sets a fixed limit and names the previous mode; audited', async () => {
    const r = await admin.patch(`/api/admin/adaptive/keys/${otherKey}/limit?limit=9`, undefined);
    expect(r.status).toBe(200);
    expect(fields(r.body)).toEqual(sorted(SEED_FIELDS.limit));
    expect(r.body).toEqual({
      message: 'Set to fixed limit mode; concurrency limit is 9',
      key_id: otherKey,
      is_adaptive: false,
      max_concurrent: 9,
      previous_mode: 'adaptive',
    });
    expect(
      (await admin.patch(`/api/admin/adaptive/keys/${otherKey}/limit?limit=10`, undefined)).body
        .previous_mode,
    ).toBe('fixed');
    for (const q of ['', '?limit=0', '?limit=101', '?limit=abc']) {
      const bad = await admin.patch(`/api/admin/adaptive/keys/${otherKey}/limit${q}`, undefined);
      expect(bad.status).toBe(400);
      expect(bad.body.error.param).toBe('limit');
    }
    // the key pool enforces the new fixed limit at once
    const { pool } = services(gw);
    const leases = [];
    for (let i = 0; i < 10; i++) {
      const l = await pool.acquire(otherProviderId);
      expect(l.ok).toBe(true);
      if (l.ok) leases.push(l.lease);
    }
    const refused = await pool.acquire(otherProviderId);
    expect(refused.ok ? 'ok' : refused.refusal.kind).toBe('saturated');
    for (const l of leases) await pool.report(l, { notSent: true });
    expect((await admin.get('/api/admin/audit?action=adaptive_key.limit')).body.data).toHaveLength(2);
  });

  it('DELETE /keys/{id}/learning answers the seed fields; audited', async () => {
    const r = await admin.del(`/api/admin/adaptive/keys/${adaptiveKey}/learning`);
    expect(r.status).toBe(200);
    expect(fields(r.body)).toEqual(sorted(SEED_FIELDS.reset));
    const audit = (await admin.get('/api/admin/audit?action=adaptive_key.reset_learning')).body.data;
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ target_id: adaptiveKey });
    expect(audit[0].changes.learned_limit).toEqual({ from: 2, to: null });
  });

  it('unknown keys → 404 "Key not found" on every key route', async () => {
    for (const id of [randomUUID(), 'not-a-uuid']) {
      const calls = [
        admin.get(`/api/admin/adaptive/keys/${id}/stats`),
        admin.patch(`/api/admin/adaptive/keys/${id}/mode`, { enabled: true }),
        admin.del(`/api/admin/adaptive/keys/${id}/learning`),
        admin.patch(`/api/admin/adaptive/keys/${id}/limit?limit=5`, undefined),
      ];
      for (const res of await Promise.all(calls)) {
        expect(res.status).toBe(404);
        expect(res.body.error).toMatchObject({ type: 'invalid_request_error', message: 'Key not found' });
      }
    }
  });
});
