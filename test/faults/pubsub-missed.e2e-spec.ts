import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, newApiKey } from '../support/auth.js';
import { dropClientConnections, FaultProxy, pollUntil, startInstance } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, isolatedEnv, type TestGateway } from '../support/gateway.js';
import { OwnRedis } from '../support/redis-server.js';
import { adminCall } from '../support/relay.js';

/**
 * Cache invalidations are pub/sub messages: fire and forget. An instance whose Redis connection is
 * down while another instance writes misses the message. When its subscriptions come back it drops
 * the caches those messages keep fresh (routes, providers), so the write is seen — instead of the
 * old routes being served until the next write or a restart.
 */
describe('a pub/sub message missed during a Redis outage (distributed, two instances)', () => {
  let redis: OwnRedis;
  let proxy: FaultProxy;
  let fake: FakeProvider;
  let a: TestGateway;
  let b: TestGateway;
  let cleanup: () => Promise<void>;
  const adminKey = newApiKey();
  let providerId: string;

  beforeAll(async () => {
    redis = await OwnRedis.start();
    proxy = await FaultProxy.start(redis.url);
    fake = await FakeProvider.start({ models: ['m-1'] });
    const isolated = await isolatedEnv('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      REDIS_URL: redis.url,
    });
    cleanup = isolated.cleanup;
    a = await startInstance(isolated.env);
    // B reaches the same Redis through a proxy the test can cut.
    b = await startInstance({ ...isolated.env, REDIS_URL: `redis://127.0.0.1:${proxy.port}` });
    const p = await adminCall(a, adminKey, 'POST', '/api/admin/providers', {
      name: 'p1',
      base_url: fake.baseUrl,
      models: ['m-1'],
      timeout_ms: 5000,
    });
    expect(p.status).toBe(201);
    providerId = p.body.id;
    const k = await adminCall(a, adminKey, 'POST', `/api/admin/providers/${providerId}/keys`, {
      label: 'k1',
      key: 'sk-p1',
    });
    expect(k.status).toBe(201);
  });
  afterAll(async () => {
    dropClientConnections(a, b);
    await b?.close();
    await a?.close();
    await cleanup?.();
    await proxy?.close();
    await redis?.stop();
    await fake?.close();
  });

  const chat = (gw: TestGateway, model: string) =>
    getJson(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(adminKey),
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    });

  it('a route created while B was cut off is served by B once its subscriptions are back', async () => {
    const first = await adminCall(a, adminKey, 'POST', '/api/admin/routes', {
      model: 'alias-1',
      targets: [{ provider_id: providerId, model: 'm-1' }],
    });
    expect(first.status).toBe(201);
    // B has loaded its routes (and knows alias-2 is not one).
    await pollUntil(async () => (await chat(b, 'alias-1')).status === 200, {
      timeoutMs: 10_000,
      what: 'B serving alias-1',
    });
    expect((await chat(b, 'alias-2')).status).toBe(404);

    await proxy.kill();
    const second = await adminCall(a, adminKey, 'POST', '/api/admin/routes', {
      model: 'alias-2',
      targets: [{ provider_id: providerId, model: 'm-1' }],
    });
    expect(second.status).toBe(201); // A published the invalidation; B could not hear it
    await proxy.revive();

    const served = await pollUntil(
      async () => {
        const r = await chat(b, 'alias-2');
        return r.status === 200 ? r : false;
      },
      { timeoutMs: 15_000, intervalMs: 200, what: 'B serving the route created while it was cut off' },
    );
    expect(served.value.body.model).toBe('alias-2');
  });
});
