import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BreakerService } from '../../src/routing/services/breaker.service.js';
import { newApiKey, bearer } from '../support/auth.js';
import { pollUntil } from '../support/cluster.js';
import { getJson, MODES, startGateway, startGateways, type TestGateway } from '../support/gateway.js';
import { parseExposition, sampleValue } from '../observability/support.js';

/**
 * The breaker as an operator sees it: a route created through POST /api/admin/routes, failures
 * reported on instance A (as the relay does), and on instance B: `breakers` in /api/admin/status
 * (every target of the route, state, forced, counts, open_until), the gauges and A's transition
 * counter in /metrics, and a PATCH forcing a target shown in the status. Both modes (embedded: one
 * instance plays A and B).
 */

type BreakerRow = {
  route: string;
  route_id: string;
  provider_id: string;
  provider: string;
  model: string;
  state: string;
  forced: string;
  consecutive_failures: number;
  window_failures: number;
  window_requests: number;
  open_until: string | null;
};

describe.each(MODES)('breakers in status, metrics (%s)', (mode) => {
  const admin = newApiKey();
  const metricsToken = randomBytes(24).toString('base64url');
  const providerName = `brk-${randomBytes(3).toString('hex')}`;
  const alias = `chat-${randomBytes(3).toString('hex')}`;
  const env = {
    ADMIN_BOOTSTRAP_KEY: admin,
    METRICS_TOKEN: metricsToken,
    BREAKER_CONSECUTIVE_FAILURES: '3',
    BREAKER_OPEN_MS: '60000',
  };
  let A: TestGateway;
  let B: TestGateway;
  let close: () => Promise<void>;
  let providerId: string;
  let routeId: string;

  beforeAll(async () => {
    if (mode === 'distributed') {
      const g = await startGateways(2, env);
      [A, B] = g.gateways as [TestGateway, TestGateway];
      close = g.close;
    } else {
      A = B = await startGateway('embedded', env);
      close = () => A.close();
    }
    const provider = await getJson(`${A.url}/api/admin/providers`, {
      method: 'POST',
      headers: bearer(admin),
      body: JSON.stringify({ name: providerName, base_url: 'http://127.0.0.1:9/v1', models: ['m-a', 'm-b'] }),
    });
    expect(provider.status, JSON.stringify(provider.body)).toBe(201);
    providerId = provider.body.id;
    const route = await getJson(`${A.url}/api/admin/routes`, {
      method: 'POST',
      headers: bearer(admin),
      body: JSON.stringify({
        model: alias,
        targets: [
          { provider_id: providerId, model: 'm-a', weight: 1, tier: 1 },
          { provider_id: providerId, model: 'm-b', weight: 1, tier: 2, breaker: 'open' },
        ],
      }),
    });
    expect(route.status, JSON.stringify(route.body)).toBe(201);
    routeId = route.body.id;
  }, 60_000);
  afterAll(async () => close?.());

  async function breakers(gw: TestGateway): Promise<BreakerRow[]> {
    const s = await getJson(`${gw.url}/api/admin/status`, { headers: bearer(admin) });
    expect(s.status).toBe(200);
    expect(s.body.sources.breakers).toBe('wired');
    return (s.body.breakers as BreakerRow[]).filter((b) => b.route === alias);
  }

  async function scrape(gw: TestGateway) {
    const res = await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${metricsToken}` } });
    expect(res.status).toBe(200);
    return parseExposition(await res.text());
  }

  it('every target of the route, closed, with the forced value the route carries', async () => {
    const rows = await breakers(B);
    expect(rows).toEqual([
      {
        route: alias,
        route_id: routeId,
        provider_id: providerId,
        provider: providerName,
        model: 'm-a',
        state: 'closed',
        forced: 'auto',
        consecutive_failures: 0,
        window_failures: 0,
        window_requests: 0,
        open_until: null,
      },
      expect.objectContaining({ model: 'm-b', state: 'closed', forced: 'open', open_until: null }),
    ]);
    const samples = await scrape(B);
    expect(sampleValue(samples, 'floodgate_breaker_state', { provider: providerName, model: 'm-a' })).toBe(0);
  });

  it('failures reported on A: open in B’s status and gauge, a transition on A’s counter; PATCH forcing shows', async () => {
    const breaker = A.app.get(BreakerService);
    const target = { providerId, model: 'm-a' };
    for (let i = 0; i < 3; i++) breaker.report(target, 'failure', false);

    const { value: row } = await pollUntil(
      async () => (await breakers(B)).find((b) => b.model === 'm-a' && b.state === 'open'),
      { timeoutMs: 10_000, what: 'm-a open in the status' },
    );
    expect(row).toMatchObject({
      provider: providerName,
      forced: 'auto',
      consecutive_failures: 3,
      window_failures: 3,
      window_requests: 3,
    });
    const until = Date.parse(row.open_until!);
    expect(until).toBeGreaterThan(Date.now() + 50_000);
    expect(until).toBeLessThanOrEqual(Date.now() + 60_000);

    const b = await scrape(B);
    expect(sampleValue(b, 'floodgate_breaker_state', { provider: providerName, model: 'm-a' })).toBe(2);
    expect(sampleValue(b, 'floodgate_breaker_state', { provider: providerName, model: 'm-b' })).toBe(0);
    await pollUntil(
      async () =>
        sampleValue(await scrape(A), 'floodgate_breaker_transitions_total', {
          provider: providerName,
          model: 'm-a',
          to: 'open',
        }) === 1,
      { timeoutMs: 5000, what: 'the transition counted on A' },
    );

    const patched = await getJson(`${A.url}/api/admin/routes/${routeId}`, {
      method: 'PATCH',
      headers: bearer(admin),
      body: JSON.stringify({
        targets: [
          { provider_id: providerId, model: 'm-a', weight: 1, tier: 1, breaker: 'closed' },
          { provider_id: providerId, model: 'm-b', weight: 1, tier: 2 },
        ],
      }),
    });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    await pollUntil(
      async () => {
        const rows = await breakers(B);
        const a = rows.find((r) => r.model === 'm-a');
        const m = rows.find((r) => r.model === 'm-b');
        return a?.forced === 'closed' && a.state === 'open' && m?.forced === 'auto';
      },
      { timeoutMs: 10_000, what: 'the forced value in the status' },
    );
  });
});
