import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusalToApiError } from '../../src/key-pool/services/key-pool.service.js';
import type { KeyLease, KeyRefusal } from '../../src/key-pool/key-pool.types.js';
import { FakeProvider } from '../support/fake-provider.js';
import { MODES, startGateway, type TestGateway } from '../support/gateway.js';
import { adminClient, leaseOf, newAdminKey, pool, seedProvider, sleep, type Admin } from './helpers.js';

/** One real upstream exchange with a lease, reported back to the pool like the relay will. */
async function callUpstream(gw: TestGateway, lease: KeyLease): Promise<number> {
  const res = await fetch(`${lease.baseUrl}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${lease.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
  const body = (await res.json()) as { usage?: { total_tokens: number } };
  await pool(gw).report(lease, {
    status: res.status,
    headers: res.headers,
    tokens: body.usage?.total_tokens ?? 0,
  });
  return res.status;
}

function refusalOf(r: Awaited<ReturnType<ReturnType<typeof pool>['acquire']>>): KeyRefusal {
  if (r.ok) throw new Error(`expected a refusal, got key ${r.lease.keyId}`);
  return r.refusal;
}

describe.each(MODES)('KeyPool selection with a real upstream (%s mode)', (mode) => {
  let gw: TestGateway;
  let admin: Admin;
  let fake: FakeProvider;
  const adminKey = newAdminKey();

  beforeAll(async () => {
    [gw, fake] = await Promise.all([
      startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey }),
      FakeProvider.start(),
    ]);
    admin = adminClient(gw.url, adminKey);
  });
  afterAll(async () => {
    await Promise.all([gw?.close(), fake?.close()]);
  });

  it('priorities 1, 1, 2: LRU alternation between the priority-1 keys, the priority-2 key when both are at max_rpm', async () => {
    const { providerId } = await seedProvider(admin, { name: `lru-${mode}`, base_url: fake.baseUrl }, [
      { label: 'one', key: 'sk-lru-one-0000000001', priority: 1, max_rpm: 4 },
      { label: 'two', key: 'sk-lru-two-0000000002', priority: 1, max_rpm: 4 },
      { label: 'three', key: 'sk-lru-three-00000003', priority: 2, max_rpm: 4 },
    ]);
    fake.reset();
    for (let i = 0; i < 12; i++)
      expect(await callUpstream(gw, leaseOf(await pool(gw).acquire(providerId)))).toBe(200);
    const seen = fake.requests.map((r) => r.key!.replace(/^sk-lru-(\w+)-.*$/, '$1'));
    expect(seen.slice(0, 8).join(',')).toMatch(/^(one,two|two,one)(,one,two|,two,one){3}$/);
    expect(seen.slice(0, 8).filter((k) => k === 'one')).toHaveLength(4);
    expect(seen.slice(8)).toEqual(['three', 'three', 'three', 'three']);
    const refusal = refusalOf(await pool(gw).acquire(providerId));
    expect(refusal).toMatchObject({
      kind: 'rate_limited',
      code: 'upstream_keys_rate_limited',
      keys: { usable: 3, rateLimited: 3 },
    });
  });

  it('a 429 with Retry-After: 3 → no request to that key for 3 s, then it serves again by itself', async () => {
    const { providerId } = await seedProvider(admin, { name: `cool-${mode}`, base_url: fake.baseUrl }, [
      { label: 'main', key: 'sk-cool-main-00000001', priority: 1 },
      { label: 'spare', key: 'sk-cool-spare-0000002', priority: 2 },
    ]);
    fake.reset();
    fake.when({ key: 'sk-cool-main-00000001', times: 1, reply: FakeProvider.rateLimited(3) });
    // Until the main key serves again (a condition, 15 s cap — not a 4.2 s loop whose pace a busy
    // machine decides): each acquisition's start and the key it got.
    const picks: { at: number; key: string }[] = [];
    let reportedAt = 0; // when the 429's report returned: the cooldown runs to at most this + 3 s
    for (const deadline = Date.now() + 15_000; Date.now() < deadline;) {
      const at = Date.now();
      const lease = leaseOf(await pool(gw).acquire(providerId)); // never refused: the spare serves
      const status = await callUpstream(gw, lease);
      picks.push({ at, key: lease.keyLabel });
      if (status === 429) reportedAt = Date.now();
      else if (reportedAt > 0 && lease.keyLabel === 'main') break;
      await sleep(25);
    }
    const main = fake.requestsFor('sk-cool-main-00000001');
    expect(main[0]!.status).toBe(429);
    const t429 = main[0]!.at;
    const next = main[1];
    expect(next, 'the key came back by itself').toBeDefined();
    expect(next!.at - t429).toBeGreaterThanOrEqual(2990);
    // ... and at once: no acquisition that started after the cooldown went to the spare
    const late = picks.filter((p) => p.key === 'spare' && p.at > reportedAt + 3000 + 20);
    expect(late, JSON.stringify({ reportedAt, picks })).toEqual([]);
    expect(main.slice(1).every((r) => r.status === 200)).toBe(true);
    const spare = fake.requestsFor('sk-cool-spare-0000002');
    expect(spare.length).toBeGreaterThanOrEqual(1); // it served during the cooldown
    expect(spare.every((r) => r.at > t429 && r.at < next!.at + 50)).toBe(true);
    const keys = (await admin.get(`/api/admin/providers/${providerId}/keys`)).body as any[];
    expect(keys.find((k) => k.label === 'main')).toMatchObject({
      state: 'active',
      enabled: true,
      last_429_at: expect.any(String),
    });
  });

  it('three distinct refusals with correct retry times: all cooling, all at their window, no usable keys', async () => {
    const kp = pool(gw);
    // (a) all cooling: Retry-After 12 / 20 / 30 → earliest recovery ≈ 12 s
    const cooling = await seedProvider(admin, { name: `all-cooling-${mode}`, base_url: fake.baseUrl }, [
      { label: 'k1', key: 'sk-allcool-k1-0000001' },
      { label: 'k2', key: 'sk-allcool-k2-0000002' },
      { label: 'k3', key: 'sk-allcool-k3-0000003' },
    ]);
    for (const seconds of [12, 20, 30]) {
      const lease = leaseOf(await kp.acquire(cooling.providerId));
      await kp.report(lease, { status: 429, headers: { 'retry-after': String(seconds) } });
    }
    const a = refusalOf(await kp.acquire(cooling.providerId));
    expect(a).toMatchObject({
      kind: 'cooling',
      code: 'upstream_keys_cooling',
      keys: { usable: 3, cooling: 3, rateLimited: 0 },
    });
    expect(a.retryAfterMs).toBeGreaterThan(11_000);
    expect(a.retryAfterMs).toBeLessThanOrEqual(12_000);
    expect(a.message).toBe(
      `all 3 keys of provider all-cooling-${mode} are cooling down; the first is ready in 12 s`,
    );

    // (b) all at RPM/TPM: max_rpm 2 each → the first slot frees ≈ 60 s after it was taken
    const full = await seedProvider(admin, { name: `all-full-${mode}`, base_url: fake.baseUrl }, [
      { label: 'k1', key: 'sk-allfull-k1-0000001', max_rpm: 2 },
      { label: 'k2', key: 'sk-allfull-k2-0000002', max_tpm: 50 },
    ]);
    const first = Date.now();
    for (let i = 0; i < 3; i++) {
      const lease = leaseOf(await kp.acquire(full.providerId));
      await kp.report(lease, { status: 200, tokens: lease.keyLabel === 'k2' ? 80 : 5 });
    }
    const b = refusalOf(await kp.acquire(full.providerId));
    expect(b).toMatchObject({
      kind: 'rate_limited',
      code: 'upstream_keys_rate_limited',
      keys: { usable: 2, rateLimited: 2, cooling: 0 },
    });
    expect(b.retryAfterMs).toBeGreaterThan(60_000 - (Date.now() - first) - 1000);
    expect(b.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(b.message).toBe(
      `all 2 keys of provider all-full-${mode} are at their RPM/TPM limit; the first has room in 60 s`,
    );

    // (c) no enabled keys
    const off = await seedProvider(admin, { name: `all-off-${mode}`, base_url: fake.baseUrl }, [
      { label: 'k1', key: 'sk-alloff-k1-0000001', enabled: false },
      { label: 'k2', key: 'sk-alloff-k2-0000002' },
    ]);
    await admin.patch(`/api/admin/provider-keys/${off.keyIds[1]}`, { enabled: false });
    const c = refusalOf(await kp.acquire(off.providerId));
    expect(c).toMatchObject({ kind: 'no_usable_keys', code: 'no_usable_upstream_keys', retryAfterMs: 0 });
    expect(c.message).toBe(`provider all-off-${mode} has no usable keys (2 disabled)`);

    expect(new Set([a.code, b.code, c.code]).size).toBe(3);
    expect(refusalToApiError(a)).toMatchObject({
      status: 429,
      type: 'rate_limit_error',
      headers: { 'retry-after': '12' },
    });
    expect(refusalToApiError(b)).toMatchObject({ status: 429, headers: { 'retry-after': '60' } });
    expect(refusalToApiError(c)).toMatchObject({
      status: 503,
      type: 'service_unavailable_error',
      code: 'no_usable_upstream_keys',
    });

    const unknown = refusalOf(await kp.acquire('00000000-0000-4000-8000-000000000000'));
    expect(unknown.kind).toBe('no_usable_keys');
  });

  it('admin writes invalidate the candidate cache at once (no stale selection)', async () => {
    const { providerId, keyIds } = await seedProvider(
      admin,
      { name: `inval-${mode}`, base_url: fake.baseUrl },
      [
        { label: 'a', key: 'sk-inval-a-000000001', priority: 1 },
        { label: 'b', key: 'sk-inval-b-000000002', priority: 2 },
      ],
    );
    const kp = pool(gw);
    expect(leaseOf(await kp.acquire(providerId)).keyLabel).toBe('a');
    await admin.patch(`/api/admin/provider-keys/${keyIds[0]}`, { enabled: false });
    expect(leaseOf(await kp.acquire(providerId)).keyLabel).toBe('b');
    await admin.patch(`/api/admin/provider-keys/${keyIds[1]}`, { priority: 0 });
    await admin.patch(`/api/admin/provider-keys/${keyIds[0]}`, { enabled: true });
    expect(leaseOf(await kp.acquire(providerId)).keyLabel).toBe('b');
    await admin.patch(`/api/admin/providers/${providerId}`, { enabled: false });
    expect(refusalOf(await kp.acquire(providerId)).message).toBe(`provider inval-${mode} is disabled`);
    expect((await kp.routableProviders()).map((p) => p.id)).not.toContain(providerId);
  });
});
