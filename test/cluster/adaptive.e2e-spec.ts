import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdaptiveService } from '../../src/adaptive/services/adaptive.service.js';
import { bearer, newApiKey } from '../support/auth.js';
import { addProvider, chat, dropClientConnections, pollUntil, providerStatus } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, startGateways, type TestGateway } from '../support/gateway.js';

/**
 * Adaptive state is one shared value, not one per instance: the learned concurrency limit of an
 * upstream key (every instance's admin API answers the same stats, and the limit is enforced for
 * all instances together), and the provider's retreat state.
 */
describe('three instances: one learned limit, one retreat state', () => {
  let cluster: Awaited<ReturnType<typeof startGateways>>;
  let gws: TestGateway[];
  let fake: FakeProvider;
  const adminKey = newApiKey();

  beforeAll(async () => {
    // the upstream answers 429 ("concurrency") above 2 requests in flight
    fake = await FakeProvider.start({ maxConcurrent: 2 });
    cluster = await startGateways(3, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_TIMEOUT_MS: '2000',
      ADAPTIVE_INITIAL_LIMIT: '6',
      // no increase during the test: what is learned is only what the 429s taught
      ADAPTIVE_HOLD_MS: '600000',
      ADAPTIVE_FLUSH_MS: '200',
      RETREAT_WINDOW_MS: '60000',
      RETREAT_MIN_SAMPLES: '6',
      RETREAT_HOLD_MS: '600000',
      KEY_COOLDOWN_DEFAULT_SECONDS: '1',
    });
    gws = cluster.gateways;
  });
  afterAll(async () => {
    dropClientConnections(...(gws ?? []));
    await cluster?.close();
    await fake?.close();
  });

  const idle = () => Promise.all(gws.map((g) => g.app.get(AdaptiveService).idle()));

  it('concurrency 429s on one key, load on all instances: every instance reports the same learned limit, and together they keep under it', async () => {
    const { keyIds } = await addProvider(
      gws[0]!,
      adminKey,
      fake,
      [{ key: 'sk-adaptive', max_concurrent: null }],
      {
        models: ['adaptive-model'],
      },
    );
    const keyId = keyIds[0]!;
    fake.when({ model: 'adaptive-model', reply: { delayMs: 150 } });
    const stats = async (gw: TestGateway) => {
      const r = await getJson(`${gw.url}/api/admin/adaptive/keys/${keyId}/stats`, {
        headers: bearer(adminKey, false),
      });
      expect(r.status).toBe(200);
      return r.body;
    };
    const burst = (n: number, tag: string) =>
      Promise.all(
        Array.from({ length: n }, (_, i) =>
          chat(gws[i % 3]!.url, adminKey, `${tag}-${i}`, { model: 'adaptive-model' }),
        ),
      );

    // learn: bursts of 12 spread over A, B, C until the upstream stops refusing
    let learned: number | null = null;
    for (let i = 0; i < 6; i++) {
      const answers = await burst(12, `learn-${i}`);
      expect(answers.filter((a) => a.status !== 200 && a.status !== 429).map((a) => a.text)).toEqual([]);
      await idle();
      learned = (await stats(gws[0]!)).learned_limit;
      if (learned !== null && learned <= 2) break;
    }
    expect(learned).not.toBeNull();
    expect(learned!).toBeLessThanOrEqual(2);
    expect(learned!).toBeGreaterThanOrEqual(1);

    // one value: the three instances answer identical stats
    const { value: views, ms } = await pollUntil(
      async () => {
        await idle();
        const all = await Promise.all(gws.map(stats));
        return all.every((s) => JSON.stringify(s) === JSON.stringify(all[0])) ? all : false;
      },
      { timeoutMs: 3000, what: 'the three instances to report the same stats' },
    );
    console.log(
      `[cluster] learned limit ${views[0].learned_limit} (effective ${views[0].effective_limit}, ${views[0].adjustment_count} adjustments, ${views[0].concurrent_429_count} concurrency 429s); all instances agreed after ${ms.toFixed(0)} ms`,
    );
    for (const s of views) {
      expect(s.adaptive_mode).toBe(true);
      expect(s.learned_limit).toBe(learned);
      expect(s.effective_limit).toBe(learned);
      expect(s.concurrent_429_count).toBeGreaterThan(0);
      expect(s.adjustment_count).toBeGreaterThan(0);
    }

    // enforced together: 18 concurrent requests over the three instances never exceed it upstream
    fake.reset();
    fake.when({ model: 'adaptive-model', reply: { delayMs: 100 } });
    const answers = await burst(18, 'enforce');
    console.log(
      `[cluster] enforcement burst: upstream max in flight ${fake.maxInFlight} (learned ${learned})`,
    );
    expect(fake.maxInFlight).toBeLessThanOrEqual(learned!);
    expect(answers.map((a) => a.status)).toEqual(Array(18).fill(200));
  });

  it('upstream rate 429s seen by all instances: the retreat state is one (AdaptiveService.retreatStatus on each instance agrees)', async () => {
    const { providerId } = await retreatTraffic('retreat-model-a');
    const { value: views } = await pollUntil(
      async () => {
        await idle();
        const all = await Promise.all(gws.map((g) => g.app.get(AdaptiveService).retreatStatus(providerId)));
        return all[0]!.state === 'retreat' && all.every((v) => JSON.stringify(v) === JSON.stringify(all[0]))
          ? all
          : false;
      },
      { timeoutMs: 3000, what: 'every instance to report the provider in RETREAT' },
    );
    console.log(`[cluster] retreat (module): ${JSON.stringify(views[0])}`);
    expect(views[0]!.upstream_429_rate).toBeGreaterThan(0.1);
    expect(views[0]!.effective_rpm!).toBeLessThan(views[0]!.base_rpm!);
  });

  it('…and GET /api/admin/status providers[].retreat agrees on every instance', async () => {
    const { providerId } = await retreatTraffic('retreat-model-b');
    const read = async () => {
      await idle();
      return Promise.all(gws.map(async (g) => (await providerStatus(g, adminKey, providerId))!));
    };
    const first = await read();
    expect(first[0]!.sources.retreat, 'status source "retreat" must be wired to Adaptive').toBe('wired');
    const { value: views } = await pollUntil(
      async () => {
        const all = (await read()).map((p) => p.retreat);
        return all[0]?.state === 'retreat' && all.every((v) => JSON.stringify(v) === JSON.stringify(all[0]))
          ? all
          : false;
      },
      { timeoutMs: 3000, intervalMs: 250, what: 'every instance status to show the provider in retreat' },
    );
    console.log(`[cluster] retreat (status): ${JSON.stringify(views[0])}`);
    expect(views[0].base_rpm).toBe(600);
    expect(views[0].effective_rpm).toBeLessThan(600);
    expect(views[0].upstream_429_rate).toBeGreaterThan(0.1);
  });

  /**
   * A provider (rpm 600) whose upstream answers its first 8 requests with rate 429s, the rest with
   * 200; chats round-robin over A, B, C until the shared state leaves NORMAL (at most 16: in RETREAT
   * the relay's retreat bucket slows further traffic down, by design).
   */
  async function retreatTraffic(model: string): Promise<{ providerId: string }> {
    const keys = [1, 2, 3].map((i) => ({ key: `sk-${model}-${i}`, max_concurrent: 10 }));
    const created = await addProvider(gws[1]!, adminKey, fake, keys, {
      models: [model],
      rpm: 600,
      burst: 60,
    });
    fake.when({ model, times: 8, reply: FakeProvider.rateLimited(1) });
    const adaptive = gws[0]!.app.get(AdaptiveService);
    for (let i = 0; i < 16; i++) {
      const a = await chat(gws[i % 3]!.url, adminKey, `${model}-${i}`, { model });
      expect([200, 429]).toContain(a.status);
      await idle();
      if ((await adaptive.retreatStatus(created.providerId)).state !== 'normal') break;
    }
    return created;
  }
});
