import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BreakerService } from '../../src/routing/services/breaker.service.js';
import { pollUntil } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { chatVia, startRoutes, type RoutesFixture } from './routes-fixture.js';

const TARGET = 'x-floodgate-route-target';
// Long enough for ten requests one after another on a loaded machine: each phase below must fit
// in one open period (with 2 s, a slow phase reached half-open and sent an extra probe).
const OPEN_MS = 5000;

/**
 * Routes and the circuit breaker per target, two instances sharing Redis (issue 15's first
 * "Checked by"): tier 1 answers 500 → every request is still answered 200 by tier 2; once the
 * breaker opens, tier 1 receives nothing until its half-open probe; healthy again → traffic returns.
 */
describe('routes with a circuit breaker across two instances (distributed)', () => {
  let fx: RoutesFixture;
  beforeAll(async () => {
    fx = await startRoutes('distributed', {
      instances: 2,
      env: { BREAKER_CONSECUTIVE_FAILURES: '3', BREAKER_OPEN_MS: String(OPEN_MS) },
    });
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('tier 1 failing: 200s from tier 2, tier 1 left alone while open, one probe when half-open, traffic back once healthy', async () => {
    const a = await fx.addUpstream('brka');
    const b = await fx.addUpstream('brkb');
    a.fake.when({ reply: FakeProvider.serverError(500) });
    await fx.createRoute({
      model: 'breaker-route',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1 },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    const send = async (n: number) => {
      const targets: string[] = [];
      for (let i = 0; i < n; i++) {
        const r = await chatVia(fx.gateways[i % 2]!.url, fx.adminKey, 'breaker-route');
        expect(r.status).toBe(200);
        targets.push(r.headers.get(TARGET)!);
      }
      return targets;
    };
    // Failing: every request is answered by tier 2; the breaker opens after 3 failures in a row
    // (a failure reported by one instance opens it for both).
    expect(new Set(await send(10))).toEqual(new Set([`brkb/${b.model}`]));
    const afterOpening = a.fake.requests.length;
    expect(afterOpening).toBeGreaterThanOrEqual(3);
    expect(afterOpening).toBeLessThanOrEqual(5);
    // The open state reaches the other instance in a pub/sub message, on its own connection: waited
    // for (not assumed by the time the next request goes; under load the other instance once sent a
    // 4th request to tier 1 here).
    const tierOne = { providerId: a.providerId, model: a.model };
    await pollUntil(
      async () =>
        (
          await Promise.all(
            fx.gateways.map((g) => Promise.resolve(g.app.get(BreakerService).admit(tierOne, 'auto'))),
          )
        ).every((x) => x === 'deny'),
      { timeoutMs: 5000, what: 'tier 1 open on both instances' },
    );
    expect(a.fake.requests.length).toBe(afterOpening);
    // Open: tier 1 receives nothing, on either instance.
    expect(new Set(await send(10))).toEqual(new Set([`brkb/${b.model}`]));
    expect(a.fake.requests.length).toBe(afterOpening);
    // Past the open time, still failing: exactly one probe reaches tier 1 (its request still gets
    // tier 2's answer), then it is open again.
    await new Promise((r) => setTimeout(r, OPEN_MS + 300));
    expect(new Set(await send(10))).toEqual(new Set([`brkb/${b.model}`]));
    expect(a.fake.requests.length).toBe(afterOpening + 1);
    // Healthy again: the next probe succeeds, the breaker closes, traffic returns to tier 1.
    a.fake.reset();
    await new Promise((r) => setTimeout(r, OPEN_MS + 300));
    const back = await send(10);
    expect(back[0]).toBe(`brka/${a.model}`); // the probe itself is answered by tier 1
    expect(back.slice(-5)).toEqual(Array(5).fill(`brka/${a.model}`));
  }, 90_000);

  it('a breaker forced open in the route (breaker: "open") sends nothing to that target', async () => {
    const a = await fx.addUpstream('forceda');
    const b = await fx.addUpstream('forcedb');
    await fx.createRoute({
      model: 'forced-open',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1, breaker: 'open' },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    for (let i = 0; i < 4; i++) {
      const r = await chatVia(fx.gateways[i % 2]!.url, fx.adminKey, 'forced-open');
      expect(r.status).toBe(200);
      expect(r.headers.get(TARGET)).toBe(`forcedb/${b.model}`);
    }
    expect(a.fake.requests).toHaveLength(0);
  });

  it('a half-open probe answered 429 tells the breaker nothing and is given back: the next request probes at once', async () => {
    const a = await fx.addUpstream('probea', [{}, {}]); // a 429 cools its key: the other one probes next
    const b = await fx.addUpstream('probeb');
    a.fake.when({ reply: FakeProvider.serverError(500) });
    await fx.createRoute({
      model: 'probe-429',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1 },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    for (let i = 0; i < 6; i++) expect((await chatVia(fx.gw.url, fx.adminKey, 'probe-429')).status).toBe(200);
    const opened = a.fake.requests.length;
    expect((await chatVia(fx.gw.url, fx.adminKey, 'probe-429')).headers.get(TARGET)).toBe(
      `probeb/${b.model}`,
    );
    expect(a.fake.requests.length).toBe(opened); // open
    a.fake.reset();
    a.fake.when({ times: 1, reply: FakeProvider.rateLimited(null) });
    await new Promise((r) => setTimeout(r, OPEN_MS + 300));
    // the probe: a 429 (not a failure for the breaker), the request served by tier 2
    const probed = await chatVia(fx.gw.url, fx.adminKey, 'probe-429');
    expect(probed.status).toBe(200);
    expect(probed.headers.get(TARGET)).toBe(`probeb/${b.model}`);
    expect(a.fake.requests).toHaveLength(1);
    // its claim given back: the next request probes at once (not after the claim's expiry), succeeds,
    // and the breaker closes
    const next = await chatVia(fx.gateways[1]!.url, fx.adminKey, 'probe-429');
    expect(next.headers.get(TARGET)).toBe(`probea/${a.model}`);
    expect(a.fake.requests).toHaveLength(2);
  });
});
