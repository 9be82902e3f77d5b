import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { AdaptiveService } from '../../src/adaptive/services/adaptive.service.js';
import { AdmissionGrants } from '../../src/relay/admission-grants.js';
import { bearer, createUserWithKey, newApiKey } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import { startGateway, startGateways, type TestGateway } from '../support/gateway.js';
import { adminCall } from '../support/relay.js';
import { OwnRedis } from '../support/redis-server.js';

/**
 * ADMISSION_GRANTS=on (docs/scaling.md "Local admission grants"): two gateway instances on a Redis
 * of the test's own, one fake provider with one upstream key (max_rpm 900: an exact log; 40
 * concurrent). FLOODGATE_TEST_GRANTS=off runs the same file with the feature off (every test
 * below then fails: that is the proof that it tests the feature).
 */
const GRANTS = process.env.FLOODGATE_TEST_GRANTS ?? 'on';

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('local admission grants (distributed, one Redis)', () => {
  let redis: OwnRedis;
  let direct: Redis;
  let fake: FakeProvider;
  let fleet: Awaited<ReturnType<typeof startGateways>>;
  let gws: TestGateway[];
  let adminKey: string;
  let providerId: string;
  let upstreamKeyId: string;
  let prefix: string;

  beforeAll(async () => {
    redis = await OwnRedis.start();
    direct = new Redis(redis.url);
    fake = await FakeProvider.start();
    adminKey = newApiKey();
    fleet = await startGateways(2, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      REDIS_URL: redis.url,
      ADMISSION_GRANTS: GRANTS,
      ADAPTIVE_FLUSH_MS: '600000',
    });
    gws = fleet.gateways;
    prefix = fleet.env.REDIS_PREFIX!;
    const provider = await adminCall(gws[0]!, adminKey, 'POST', '/api/admin/providers', {
      name: 'fake',
      base_url: fake.baseUrl,
      models: fake.models,
      timeout_ms: 5000,
    });
    expect(provider.status).toBe(201);
    providerId = provider.body.id;
    const key = await adminCall(gws[0]!, adminKey, 'POST', `/api/admin/providers/${providerId}/keys`, {
      key: 'sk-grant-1',
      label: 'k1',
      max_rpm: 900,
      max_concurrent: 40,
    });
    expect(key.status).toBe(201);
    upstreamKeyId = key.body.id;
  }, 60_000);

  let closed = false;
  afterAll(async () => {
    direct?.disconnect();
    if (!closed) await fleet?.close();
    await fake?.close();
    await redis?.stop();
  });

  const grantsOf = (i: number) => gws[i]!.app.get(AdmissionGrants);
  const send = (i: number, key: string) =>
    fetch(`${gws[i]!.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(key),
      body: JSON.stringify({ model: fake.models[0], messages: [{ role: 'user', content: 'hi' }] }),
    });
  const clientKey = async (rpm: number) =>
    (await createUserWithKey(gws[0]!, adminKey, 'user', { key: { limits: { rpm } } })).key;
  const clientKeyWithId = async (rpm: number) =>
    createUserWithKey(gws[0]!, adminKey, 'user', { key: { limits: { rpm } } });
  const inflight = () =>
    direct.zcount(`${prefix}:kp:{${providerId}}:k:${upstreamKeyId}:inf`, `(${Date.now()}`, '+inf');
  const keyRpm = () =>
    direct.zcount(`${prefix}:kp:{${providerId}}:k:${upstreamKeyId}:rpm`, `(${Date.now() - 60_000}`, '+inf');
  const clientWindow = (apiKeyId: string) =>
    direct.zcount(`${prefix}:rl:{key:${apiKeyId}}:key:sw`, `(${Date.now() - 60_000}`, '+inf');
  const keyTpm = async () =>
    Number((await direct.hget(`${prefix}:kp:{${providerId}}:k:${upstreamKeyId}:tpb`, 's')) ?? 0);
  const retreatAnswers = async () => Number((await direct.hget(`${prefix}:ad:{${providerId}}:rw`, 'N')) ?? 0);
  const evalshaCalls = async () => {
    const m = /cmdstat_evalsha:calls=(\d+)/.exec(await direct.info('commandstats'));
    return m ? Number(m[1]) : 0;
  };
  /** One sample of instance i's /metrics (0 when the series is absent). */
  const scrape = async (i: number) => {
    const res = await fetch(`${gws[i]!.url}/metrics`);
    expect(res.status).toBe(200);
    return res.text();
  };
  const sample = (text: string, series: string): number | undefined => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
  const grantEvent = (text: string, event: string) =>
    sample(text, `floodgate_admission_grant_events_total{event="${event}"}`) ?? 0;
  /** Sends the key's requests to instance i until it holds a block's unused units (a lone request takes none). */
  const holdGrant = async (i: number, key: string): Promise<number> => {
    let sent = 0;
    while (grantsOf(i).held() === 0) {
      expect(sent).toBeLessThan(10);
      const res = await send(i, key);
      await res.text();
      expect(res.status).toBe(200);
      sent++;
    }
    return sent;
  };
  const settled = async () => {
    await until('every grant given back', () => grantsOf(0).held() === 0 && grantsOf(1).held() === 0);
    await grantsOf(0).settled();
    await grantsOf(1).settled();
    await until('no lease held', async () => (await inflight()) === 0);
    // Adaptive's pending answers (carried by a later report, or recorded on their own) are in
    for (const gw of gws) await gw.app.get(AdaptiveService).idle();
  };

  it('a c=1 loop of N requests makes far fewer than 2N EVALSHA', async () => {
    const key = await clientKey(600);
    await send(0, key).then((r) => r.text()); // warm: scripts loaded, caches filled
    await settled();
    const N = 80;
    const before = await evalshaCalls();
    for (let i = 0; i < N; i++) {
      const res = await send(0, key);
      expect(res.status).toBe(200);
      expect(res.headers.get('x-ratelimit-limit')).not.toBeNull();
      await res.text();
    }
    await settled();
    const calls = (await evalshaCalls()) - before;
    console.log(
      `grants ${GRANTS}: ${N} requests at c=1 → ${calls} EVALSHA (${JSON.stringify(grantsOf(0).counters)})`,
    );
    // off: 2 per request (admission + release); on: per block of B one admission and one flush
    // (the B releases as one batch call); B follows the key's recent requests (1, 1, 2, 3, …) up to
    // 10 here (a quarter of the key's 40 concurrent)
    expect(calls).toBeLessThan(0.5 * N);
    expect(grantsOf(0).counters.local).toBeGreaterThan(N / 2);
  });

  it('exports the grant counters in /metrics: blocks, local admissions, flushed releases, give-backs, held units', async () => {
    const key = await clientKey(600);
    await settled();
    const before = await scrape(0);
    // the families exist from the start (dashboards), every event series at least at 0
    for (const e of ['block', 'local_admission', 'flushed_release', 'give_back', 'drop'])
      expect(sample(before, `floodgate_admission_grant_events_total{event="${e}"}`)).toBeGreaterThanOrEqual(
        0,
      );
    expect(sample(before, 'floodgate_admission_grant_returned_units_total')).toBeGreaterThanOrEqual(0);
    expect(sample(before, 'floodgate_admission_grant_units_held')).toBe(0);
    // the grant stays live through the loop and the scrape below
    const { idleMs, maxAgeMs } = grantsOf(0);
    grantsOf(0).idleMs = 60_000;
    grantsOf(0).maxAgeMs = 60_000;
    onTestFinished(() => {
      grantsOf(0).idleMs = idleMs;
      grantsOf(0).maxAgeMs = maxAgeMs;
    });
    const localBefore = grantsOf(0).counters.local;
    const N = 6;
    for (let i = 0; i < N; i++) {
      const res = await send(0, key);
      expect(res.status).toBe(200);
      await res.text();
    }
    const local = grantsOf(0).counters.local - localBefore;
    expect(local).toBeGreaterThanOrEqual(1);
    // a grant is live with units left: the gauge shows them, the events moved
    const during = await scrape(0);
    expect(grantEvent(during, 'block') - grantEvent(before, 'block')).toBeGreaterThanOrEqual(1);
    expect(grantEvent(during, 'local_admission') - grantEvent(before, 'local_admission')).toBe(local);
    const held = sample(during, 'floodgate_admission_grant_units_held')!;
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(32);
    // idle again: the grant is given back, its plain answers' releases flushed with it
    grantsOf(0).idleMs = idleMs;
    grantsOf(0).maxAgeMs = maxAgeMs;
    await settled();
    const after = await scrape(0);
    expect(grantEvent(after, 'give_back') - grantEvent(before, 'give_back')).toBeGreaterThanOrEqual(1);
    expect(
      grantEvent(after, 'flushed_release') - grantEvent(before, 'flushed_release'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sample(after, 'floodgate_admission_grant_returned_units_total')! -
        sample(before, 'floodgate_admission_grant_returned_units_total')!,
    ).toBeGreaterThanOrEqual(held);
    expect(sample(after, 'floodgate_admission_grant_units_held')).toBe(0);
    // what the scrape says is what the instance counted
    const c = grantsOf(0).counters;
    expect(grantEvent(after, 'local_admission')).toBe(c.local);
    expect(grantEvent(after, 'block')).toBe(c.blocks);
    expect(grantEvent(after, 'give_back')).toBe(c.returns);
    expect(grantEvent(after, 'flushed_release')).toBe(c.flushedReleases);
    expect(sample(after, 'floodgate_admission_grant_returned_units_total')).toBe(c.returnedUnits);
  });

  it('a lone request reserves no block: the exact admission, nothing held, nothing to give back', async () => {
    const key = await clientKey(600);
    await settled();
    const { blocks, returns } = grantsOf(0).counters;
    const before = await evalshaCalls();
    const res = await send(0, key);
    expect(res.status).toBe(200);
    await res.text();
    expect(grantsOf(0).counters.blocks).toBe(blocks);
    expect(grantsOf(0).held()).toBe(0);
    await settled();
    expect(grantsOf(0).counters.returns).toBe(returns);
    // the admission and the answer's release: two scripts, as with ADMISSION_GRANTS=off (a block
    // of 10 units here, 1 used, cost a third script to give the other 9 back)
    expect((await evalshaCalls()) - before).toBe(2);
  });

  it('gives an idle grant back: the key in-flight count and every window hold what was really used', async () => {
    const { key, keyId } = await createUserWithKey(gws[0]!, adminKey, 'user', {
      key: { limits: { rpm: 600, tpm: 2_000_000 } },
    });
    await settled();
    const rpmBefore = await keyRpm();
    const tpmBefore = await keyTpm();
    const answersBefore = await retreatAnswers();
    const blocksBefore = grantsOf(0).counters.blocks;
    let tokens = 0;
    for (let i = 0; i < 3; i++) {
      const res = await send(0, key);
      expect(res.status).toBe(200);
      tokens += ((await res.json()) as { usage: { total_tokens: number } }).usage.total_tokens;
    }
    expect(tokens).toBeGreaterThan(0);
    expect(grantsOf(0).counters.blocks).toBeGreaterThan(blocksBefore); // a block was taken…
    await settled(); // …and given back once idle, with the three answers' releases
    expect(await clientWindow(keyId)).toBe(3);
    expect((await keyRpm()) - rpmBefore).toBe(3);
    expect(await inflight()).toBe(0);
    // the deferred releases charged every token (the key's TPM window, the client's TPM budget)
    // and Adaptive's retreat window counted the three answers
    expect((await keyTpm()) - tpmBefore).toBe(tokens);
    expect(Number((await direct.get(`${prefix}:rl:{key:${keyId}}:tpm:sum`)) ?? 0)).toBe(tokens);
    await until(
      'the retreat window counted the answers',
      async () => (await retreatAnswers()) - answersBefore === 3,
    );
  });

  it('X-RateLimit-Remaining steps down by one per request, locally admitted or not (as the exact admission says)', async () => {
    const LIMIT = 100; // B = floor(100 / 16) = 6: two blocks in the loop below
    const key = await clientKey(LIMIT);
    await settled();
    const { idleMs, maxAgeMs } = grantsOf(0);
    grantsOf(0).idleMs = 60_000; // every block used up by the loop, none given back early
    grantsOf(0).maxAgeMs = 60_000;
    onTestFinished(() => {
      grantsOf(0).idleMs = idleMs;
      grantsOf(0).maxAgeMs = maxAgeMs;
    });
    const localBefore = grantsOf(0).counters.local;
    const N = 12;
    const remaining: number[] = [];
    for (let i = 0; i < N; i++) {
      const res = await send(0, key);
      expect(res.status).toBe(200);
      await res.text();
      remaining.push(Number(res.headers.get('x-ratelimit-remaining')));
      // the IETF header says the same for the key's policy
      expect(res.headers.get('ratelimit')).toContain(`;r=${LIMIT - (i + 1)};`);
    }
    // a block's request and its local units: the room left as if each had been decided alone
    expect(remaining).toEqual(Array.from({ length: N }, (_, i) => LIMIT - (i + 1)));
    expect(grantsOf(0).counters.local - localBefore).toBeGreaterThanOrEqual(N / 2);
  });

  it('two instances, a burst at a client limit: never over it, at least limit − 2×B admitted', async () => {
    const LIMIT = 40;
    const { key, keyId } = await clientKeyWithId(LIMIT);
    await settled();
    const localBefore = grantsOf(0).counters.local + grantsOf(1).counters.local;
    const answers = await Promise.all(
      Array.from({ length: 160 }, (_, i) => send(i % 2, key).then(async (r) => (await r.text(), r.status))),
    );
    const admitted = answers.filter((s) => s === 200).length;
    console.log(`grants ${GRANTS}: burst of 160 at a 40/min key over two instances → ${admitted} admitted`);
    expect(answers.every((s) => s === 200 || s === 429)).toBe(true);
    expect(admitted).toBeLessThanOrEqual(LIMIT);
    // B ≤ floor(40 / 16) = 2 here; the bound is instances × B
    expect(admitted).toBeGreaterThanOrEqual(LIMIT - 2 * 2);
    await settled();
    expect(await clientWindow(keyId)).toBe(admitted); // the unused reservations were given back
    expect(grantsOf(0).counters.local + grantsOf(1).counters.local).toBeGreaterThan(localBefore);
  });

  it("a 429 from the upstream drops the provider's grants on every instance", async () => {
    const key = await clientKey(600);
    await settled();
    for (const i of [0, 1]) grantsOf(i).idleMs = 10_000; // held until the 429, not given back idle
    await holdGrant(1, key);
    await holdGrant(0, key);
    expect(grantsOf(0).held()).toBeGreaterThan(0);
    expect(grantsOf(1).held()).toBeGreaterThan(0);
    const dropped = [grantsOf(0).counters.dropped, grantsOf(1).counters.dropped];
    fake.when({ times: 1, reply: { status: 429, headers: { 'retry-after': '1' } } });
    const res = await send(0, key);
    await res.text();
    expect(res.status).not.toBe(200);
    await until(
      'both instances dropped their grants',
      () => grantsOf(0).counters.dropped > dropped[0]! && grantsOf(1).counters.dropped > dropped[1]!,
    );
    await settled();
    for (const i of [0, 1]) expect(grantEvent(await scrape(i), 'drop')).toBe(grantsOf(i).counters.dropped);
  });

  it('gives every grant back at shutdown (held reservations do not outlive the instance)', async () => {
    const { key, keyId } = await clientKeyWithId(600);
    await settled();
    for (const i of [0, 1]) grantsOf(i).idleMs = 60_000; // only the shutdown gives them back
    // the 429 above cooled the key down (a request that finds it cooling waits in the queue, which
    // makes the provider contended: no blocks meanwhile)
    const hash = `${prefix}:kp:{${providerId}}:k:${upstreamKeyId}`;
    await until('the key cooled down', async () => Number((await direct.hget(hash, 'cd')) ?? 0) < Date.now());
    await until(
      'the provider is no longer contended',
      () => ![0, 1].some((i) => grantsOf(i).isContended(providerId)),
    );
    const rpmBefore = await keyRpm();
    let sent = 0;
    for (const i of [0, 1]) sent += await holdGrant(i, key);
    expect(grantsOf(0).held() + grantsOf(1).held()).toBeGreaterThan(0);
    expect(await clientWindow(keyId)).toBeGreaterThan(sent); // the blocks' reservations
    closed = true;
    await fleet.close();
    expect(await clientWindow(keyId)).toBe(sent);
    expect((await keyRpm()) - rpmBefore).toBe(sent);
    expect(await inflight()).toBe(0);
  });
});

describe('ADMISSION_GRANTS=on where it does not apply', () => {
  it('is ignored in embedded mode: every request takes the exact admission', async () => {
    const gw = await startGateway('embedded', { ADMISSION_GRANTS: 'on' });
    try {
      expect(gw.config.rateLimit.admissionGrants).toBe(true);
      expect(gw.app.get(AdmissionGrants).enabled).toBe(false);
    } finally {
      await gw.close();
    }
  });
});
