import { afterAll, describe, expect, it } from 'vitest';
import { FakeProvider } from '../support/fake-provider.js';
import { startGateway, type Mode, type TestGateway } from '../support/gateway.js';
import { adminClient, driveLoad, newAdminKey, seedProvider, services, sleep, waitFor } from './helpers.js';

/**
 * Issue 6 "Done when" (retreat): against an upstream that answers 429 above a rate R, the gateway's
 * upstream 429 count with retreat on is at least 5× lower than with it off, measured in the same run;
 * the state machine goes NORMAL → RETREAT → RECOVER → NORMAL when the upstream recovers.
 * Admission composes the retreat bucket exactly as the relay does (KeyPool.acquire with the gate).
 */
const R = { requests: 10, windowMs: 1000 }; // the upstream accepts 10 requests per second
const PROVIDER = { rpm: 3000, burst: 10 }; // the admin believes 50 per second
const RUN_MS = 12_000;

interface Setup {
  gw: TestGateway;
  fake: FakeProvider;
  providerId: string;
}

async function setup(mode: Mode, env: Record<string, string>, keys = 4): Promise<Setup> {
  const fake = await FakeProvider.start({ rateLimit: { ...R } });
  fake.when({ reply: { delayMs: 5 } });
  const adminKey = newAdminKey();
  const gw = await startGateway(mode, {
    ADMIN_BOOTSTRAP_KEY: adminKey,
    KEY_COOLDOWN_DEFAULT_SECONDS: '1',
    ...env,
  });
  const { providerId } = await seedProvider(
    adminClient(gw.url, adminKey),
    { name: 'limited', base_url: fake.baseUrl, models: ['gpt-4o-mini'], ...PROVIDER },
    Array.from({ length: keys }, (_, i) => ({ label: `k${i}`, key: `sk-limited-${i}` })),
  );
  await services(gw).adaptive.refreshProviders();
  return { gw, fake, providerId };
}

describe('retreat bucket', () => {
  const opened: Setup[] = [];
  afterAll(async () => {
    for (const s of opened) {
      await s.gw.close();
      await s.fake.close();
    }
  });

  it('cuts upstream 429s at least 5× against an upstream limited below the configured rate (same run, on vs off)', async () => {
    const common = { RETREAT_WINDOW_MS: '2000', RETREAT_MIN_SAMPLES: '10', RETREAT_HOLD_MS: '60000' };
    const [on, off] = await Promise.all([
      setup('distributed', { ...common, RETREAT_ENABLED: 'true' }),
      setup('distributed', { ...common, RETREAT_ENABLED: 'false' }),
    ]);
    opened.push(on, off);
    const run = (s: Setup) =>
      driveLoad({
        instances: [services(s.gw)],
        providerId: s.providerId,
        clients: 16,
        durationMs: RUN_MS,
        retreatGate: true,
      });
    const [withRetreat, without] = await Promise.all([run(on), run(off)]);
    const statusOn = await services(on.gw).adaptive.retreatStatus(on.providerId);
    const statusOff = await services(off.gw).adaptive.retreatStatus(off.providerId);
    console.log(
      `[retreat] upstream 429s in ${RUN_MS / 1000} s: retreat on ${withRetreat.upstream429} of ${withRetreat.statuses.length} sent (state ${statusOn.state}, effective ${statusOn.effective_rpm} rpm of ${statusOn.base_rpm}); ` +
        `retreat off ${without.upstream429} of ${without.statuses.length} sent (state ${statusOff.state}); reduction ${(without.upstream429 / Math.max(1, withRetreat.upstream429)).toFixed(1)}×`,
    );
    expect(without.upstream429).toBeGreaterThanOrEqual(5 * Math.max(1, withRetreat.upstream429));
    expect(statusOn).toMatchObject({ state: 'retreat', base_rpm: 3000 });
    expect(statusOn.effective_rpm!).toBeLessThan(R.requests * 60);
    expect(statusOff).toMatchObject({ state: 'normal', base_rpm: 3000, effective_rpm: 3000 });
    // retreat on still served the upstream at a useful rate (it did not just stop)
    expect(withRetreat.statuses.filter((s) => s === 200).length).toBeGreaterThan(20);
  });

  it('NORMAL → RETREAT → RECOVER → NORMAL when the upstream recovers', async () => {
    const s = await setup(
      'embedded',
      {
        RETREAT_WINDOW_MS: '1000',
        RETREAT_MIN_SAMPLES: '10',
        RETREAT_HOLD_MS: '800',
        RETREAT_RECOVER_STEP: '0.25',
        RETREAT_RECOVER_STEP_MS: '300',
      },
      2,
    );
    opened.push(s);
    const { adaptive } = services(s.gw);
    const seen: string[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const st = (await adaptive.retreatStatus(s.providerId)).state;
        if (seen[seen.length - 1] !== st) seen.push(st);
        await sleep(20);
      }
    })();
    let loading = true;
    const load = (async () => {
      while (loading)
        await driveLoad({
          instances: [services(s.gw)],
          providerId: s.providerId,
          clients: 8,
          durationMs: 500,
          retreatGate: true,
        });
    })();
    await waitFor(
      () => seen,
      (v) => v.includes('retreat'),
      8000,
    );
    const retreat = await adaptive.retreatStatus(s.providerId);
    expect(retreat.upstream_429_rate).toBeGreaterThan(0.1);
    expect(retreat.effective_rpm!).toBeLessThan(3000);
    s.fake.rateLimit = null; // the upstream recovers
    await waitFor(
      () => seen,
      (v) => v[v.length - 1] === 'normal' && v.includes('recover'),
      15_000,
    );
    loading = false;
    polling = false;
    await Promise.all([load, poller]);
    expect(seen.slice(0, 4)).toEqual(['normal', 'retreat', 'recover', 'normal']);
    expect(await adaptive.retreatStatus(s.providerId)).toMatchObject({
      state: 'normal',
      effective_rpm: 3000,
      base_rpm: 3000,
    });
  });
});
