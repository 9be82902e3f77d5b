import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, newApiKey } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, startGateways, type TestGateway } from '../support/gateway.js';
import { adminCall } from '../support/relay.js';

/**
 * Issue 15's breaker check, end to end on two instances sharing Postgres and Redis: a route with
 * tier 1 = provider A (answers 500) and tier 2 = provider B. Every request is answered 200 by B; once
 * A's breaker opens, A receives nothing until its half-open probe; A healthy again → traffic returns.
 */
describe('route with a broken tier-1 target, two instances (distributed)', () => {
  const OPEN_MS = 2500;
  const FAILURES = 3;
  let a: FakeProvider;
  let b: FakeProvider;
  let gws: TestGateway[];
  let close: () => Promise<void>;
  const adminKey = newApiKey();
  let providerA: string;

  beforeAll(async () => {
    a = await FakeProvider.start({ models: ['m-a'] });
    b = await FakeProvider.start({ models: ['m-b'] });
    const started = await startGateways(2, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      BREAKER_CONSECUTIVE_FAILURES: String(FAILURES),
      BREAKER_OPEN_MS: String(OPEN_MS),
    });
    gws = started.gateways;
    close = started.close;
    const ids: string[] = [];
    for (const [name, fake, model] of [
      ['prov-a', a, 'm-a'],
      ['prov-b', b, 'm-b'],
    ] as const) {
      const p = await adminCall(gws[0]!, adminKey, 'POST', '/api/admin/providers', {
        name,
        base_url: fake.baseUrl,
        models: [model],
        timeout_ms: 5000,
      });
      expect(p.status).toBe(201);
      const k = await adminCall(gws[0]!, adminKey, 'POST', `/api/admin/providers/${p.body.id}/keys`, {
        label: `${name}-key`,
        key: `sk-${name}`,
      });
      expect(k.status).toBe(201);
      ids.push(p.body.id);
    }
    providerA = ids[0]!;
    const route = await adminCall(gws[0]!, adminKey, 'POST', '/api/admin/routes', {
      model: 'chat-default',
      targets: [
        { provider_id: ids[0], model: 'm-a', tier: 1 },
        { provider_id: ids[1], model: 'm-b', tier: 2 },
      ],
      max_attempts: 3,
    });
    expect(route.status).toBe(201);
  });
  afterAll(async () => {
    await close?.();
    await a?.close();
    await b?.close();
  });

  const chat = (gw: TestGateway) =>
    getJson(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(adminKey),
      body: JSON.stringify({ model: 'chat-default', messages: [{ role: 'user', content: 'hi' }] }),
    });

  const breakerOf = async (gw: TestGateway) => {
    const status = await adminCall(gw, adminKey, 'GET', '/api/admin/status');
    expect(status.status).toBe(200);
    return (status.body.breakers as { provider_id: string; model: string; state: string }[]).find(
      (x) => x.provider_id === providerA && x.model === 'm-a',
    );
  };

  it('answers every request from tier 2 while tier 1 fails, then stops sending to tier 1 once its breaker opens', async () => {
    a.when({ reply: FakeProvider.serverError(500) });
    for (let i = 0; i < 10; i++) {
      const r = await chat(gws[i % 2]!);
      expect(r.status).toBe(200);
      expect(r.body.model).toBe('chat-default');
      expect(r.headers.get('x-floodgate-route-target')).toBe('prov-b/m-b');
    }
    // At most the failures that open it (a report is asynchronous: one more may slip through).
    const hitsWhileOpening = a.requests.length;
    expect(hitsWhileOpening).toBeGreaterThanOrEqual(FAILURES);
    expect(hitsWhileOpening).toBeLessThanOrEqual(FAILURES + 2);
    // Both instances see it open (shared state), and A receives nothing more while it is.
    for (const gw of gws) expect((await breakerOf(gw))?.state).toBe('open');
    for (let i = 0; i < 10; i++) expect((await chat(gws[i % 2]!)).status).toBe(200);
    expect(a.requests.length).toBe(hitsWhileOpening);
    expect(b.requests.every((r) => r.body.model === 'm-b')).toBe(true);
  });

  it('after the open time, lets one probe through; a healthy probe closes it and traffic returns to tier 1', async () => {
    a.reset();
    // Healthy again, and slow enough that the probe is still out while the others are admitted.
    a.when({ times: 1, reply: { delayMs: 400 } });
    await new Promise((r) => setTimeout(r, OPEN_MS + 200));
    // Concurrent requests on both instances: exactly one of them probes A.
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => chat(gws[i % 2]!)));
    expect(answers.every((r) => r.status === 200)).toBe(true);
    expect(a.requests.length).toBe(1);
    // Closed on both instances (pub/sub) once the probe succeeded.
    await expect.poll(async () => (await breakerOf(gws[1]!))?.state, { timeout: 5000 }).toBe('closed');
    expect((await breakerOf(gws[0]!))?.state).toBe('closed');
    const back = await Promise.all(Array.from({ length: 6 }, (_, i) => chat(gws[i % 2]!)));
    for (const r of back) {
      expect(r.status).toBe(200);
      expect(r.headers.get('x-floodgate-route-target')).toBe('prov-a/m-a');
    }
  });
});
