import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app/create-app.js';
import { loadConfig } from '../../src/config/app-config.js';
import { BreakerService } from '../../src/routing/services/breaker.service.js';
import type { BreakerAdmission, TargetRef } from '../../src/routing/routing.types.js';
import { pollUntil } from '../support/cluster.js';
import { isolatedEnv, startGateway, type TestGateway } from '../support/gateway.js';
import { OwnRedisCluster } from '../support/redis-cluster.js';
import { OwnRedis } from '../support/redis-server.js';

/**
 * BreakerService through the real application: two instances sharing one Redis (the test's own
 * redis-server, so its command counts are ours alone), and the embedded mode through LocalDb. The
 * relay's calls are made directly on `app.get(BreakerService)`: report failures → open on both,
 * concurrent probe claims → exactly one probe, probe success → closed on both, probe failure → open
 * again, forced states, and no store step per success while closed.
 */

const BREAKER_ENV = {
  BREAKER_CONSECUTIVE_FAILURES: '3',
  BREAKER_OPEN_MS: '800',
  BREAKER_MIN_REQUESTS: '1000',
  LOG_LEVEL: 'silent',
};

const target = (): TargetRef => ({ providerId: randomUUID(), model: 'gpt-test' });

async function admitNow(b: BreakerService, t: TargetRef): Promise<BreakerAdmission> {
  return await b.admit(t, 'auto');
}

async function failUntilOpen(b: BreakerService, t: TargetRef): Promise<void> {
  for (let i = 0; i < 3; i++) b.report(t, 'failure', false);
  await pollUntil(async () => (await b.views([{ ...t, forced: 'auto' }]))[0]!.state === 'open', {
    timeoutMs: 5000,
    what: 'breaker open after 3 failures',
  });
}

/** Claims at the same time on every breaker service: exactly one may win. */
async function raceClaims(services: BreakerService[], t: TargetRef): Promise<BreakerAdmission[]> {
  return Promise.all(services.flatMap((b) => [admitNow(b, t), admitNow(b, t), admitNow(b, t)]));
}

/** Failures on A open it on B; concurrent claims on A and B → one probe; its success closes on both. */
async function openOnAProbeClosesOnBoth(A: BreakerService, B: BreakerService): Promise<void> {
  const t = target();
  expect(await admitNow(B, t)).toBe('allow'); // B reads the (absent) record once: closed
  await failUntilOpen(A, t);
  // B learns it from the transition's message, with no request of its own
  await pollUntil(() => B.admit(t, 'auto') === 'deny', { timeoutMs: 5000, what: 'B denies' });
  expect(A.admit(t, 'auto')).toBe('deny');
  const [view] = await B.views([{ ...t, forced: 'auto' }]);
  expect(view).toMatchObject({ state: 'open', consecutiveFailures: 3, windowFailures: 3, forced: 'auto' });
  expect(view!.openUntilMs).toBeGreaterThan(Date.now() - 100);

  await new Promise((r) => setTimeout(r, 900));
  expect((await B.views([{ ...t, forced: 'auto' }]))[0]!.state).toBe('half_open');
  const answers = await raceClaims([A, B], t);
  expect(answers.filter((a) => a === 'probe')).toHaveLength(1);
  expect(answers.filter((a) => a === 'deny')).toHaveLength(5);
  const winner = answers.indexOf('probe') < 3 ? A : B;
  const other = winner === A ? B : A;
  // the probe is out: nobody else gets one
  expect(await admitNow(other, t)).toBe('deny');

  winner.report(t, 'success', true);
  await pollUntil(() => other.admit(t, 'auto') === 'allow', {
    timeoutMs: 5000,
    what: 'closed on the other',
  });
  await pollUntil(() => winner.admit(t, 'auto') === 'allow', {
    timeoutMs: 5000,
    what: 'closed on the winner',
  });
  expect((await A.views([{ ...t, forced: 'auto' }]))[0]).toMatchObject({
    state: 'closed',
    consecutiveFailures: 0,
    windowFailures: 0,
    openUntilMs: null,
  });
}

describe('BreakerService: two instances sharing a Redis', () => {
  let redis: OwnRedis;
  let client: Redis;
  let apps: TestGateway['app'][] = [];
  let cleanup: () => Promise<void> = async () => undefined;
  let A: BreakerService;
  let B: BreakerService;

  beforeAll(async () => {
    redis = await OwnRedis.start();
    client = new Redis(redis.url);
    const isolated = await isolatedEnv('distributed', BREAKER_ENV);
    cleanup = isolated.cleanup;
    const env = { ...isolated.env, REDIS_URL: redis.url };
    for (let i = 0; i < 2; i++) {
      const app = await createApp(loadConfig(env));
      await app.init();
      apps.push(app);
    }
    A = apps[0]!.get(BreakerService);
    B = apps[1]!.get(BreakerService);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
    apps = [];
    client?.disconnect();
    await redis?.stop();
    await cleanup();
  });

  it('failures reported on A open it on B; one probe among concurrent claims on A and B; success closes on both', async () => {
    await openOnAProbeClosesOnBoth(A, B);
  });

  it('a failed probe opens it again for BREAKER_OPEN_MS', async () => {
    const t = target();
    await failUntilOpen(B, t);
    await new Promise((r) => setTimeout(r, 900));
    const answers = await raceClaims([A, B], t);
    expect(answers.filter((a) => a === 'probe')).toHaveLength(1);
    const winner = answers.indexOf('probe') < 3 ? A : B;
    winner.report(t, 'failure', true);
    await pollUntil(async () => (await A.views([{ ...t, forced: 'auto' }]))[0]!.state === 'open', {
      timeoutMs: 5000,
      what: 'open again',
    });
    await pollUntil(() => A.admit(t, 'auto') === 'deny' && B.admit(t, 'auto') === 'deny', {
      timeoutMs: 5000,
      what: 'both deny',
    });
    // and after another open period, a probe again
    await new Promise((r) => setTimeout(r, 900));
    expect((await raceClaims([A, B], t)).filter((a) => a === 'probe')).toHaveLength(1);
  });

  it('a probe claim given back (the request went elsewhere) lets the next admission on another instance probe at once', async () => {
    const t = target();
    await failUntilOpen(A, t);
    await pollUntil(() => B.admit(t, 'auto') === 'deny', { timeoutMs: 5000, what: 'B denies' });
    await new Promise((r) => setTimeout(r, 900));
    expect(await admitNow(A, t)).toBe('probe');
    expect(await admitNow(B, t)).toBe('deny'); // the claim holds for 30 s or more
    A.releaseProbe(t);
    await pollUntil(async () => (await admitNow(B, t)) === 'probe', {
      timeoutMs: 5000,
      what: 'B gets the probe after the release',
    });
    expect(await admitNow(A, t)).toBe('deny');
    // a second release by A (its claim is gone) frees nothing: B's claim holds
    A.releaseProbe(t);
    await new Promise((r) => setTimeout(r, 200));
    expect(await admitNow(A, t)).toBe('deny');
  });

  it('forced open denies a closed target, forced closed allows an open one (no store step)', async () => {
    const t = target();
    await admitNow(A, t);
    expect(A.admit(t, 'open')).toBe('deny');
    await failUntilOpen(A, t);
    expect(A.admit(t, 'closed')).toBe('allow');
    expect(A.admit(t, 'auto')).toBe('deny');
    const [v] = await A.views([{ ...t, forced: 'closed' }]);
    expect(v).toMatchObject({ state: 'open', forced: 'closed' });
    // forced closed over an open breaker: its traffic's successes cost no store step
    await client.config('RESETSTAT');
    for (let i = 0; i < 50; i++) {
      expect(A.admit(t, 'closed')).toBe('allow');
      A.report(t, 'success', false);
    }
    await new Promise((r) => setTimeout(r, 1200)); // past a flush
    // (the two instances' background steps — other targets' refreshes, KeyPool, Adaptive — only)
    expect(await evalshaCalls(client)).toBeLessThan(25);
  });

  it('closed: admit answers synchronously, successes cost no store step each (one flush per second)', async () => {
    const t = target();
    expect(await admitNow(A, t)).toBe('allow'); // the one read of a target new to this instance
    await new Promise((r) => setTimeout(r, 1100)); // let earlier flushes pass
    await client.config('RESETSTAT');
    const started = Date.now();
    for (let i = 0; i < 500; i++) {
      const a = A.admit(t, 'auto');
      expect(a).toBe('allow'); // a value, not a promise
      A.report(t, 'success', false);
    }
    const evalsBeforeFlush = await evalshaCalls(client);
    expect(evalsBeforeFlush).toBe(0);
    await pollUntil(async () => (await A.views([{ ...t, forced: 'auto' }]))[0]!.windowRequests === 500, {
      timeoutMs: 5000,
      what: 'successes flushed into the window',
    });
    const elapsedS = (Date.now() - started) / 1000;
    // the flushes (≤ one per second for this target) and the views' reads: far from 500
    expect(await evalshaCalls(client)).toBeLessThanOrEqual(Math.ceil(elapsedS) * 2 + 60);
    // a failure goes at once, and the next success then too (the count must reset)
    await client.config('RESETSTAT');
    A.report(t, 'failure', false);
    await pollUntil(async () => (await evalshaCalls(client)) >= 1, { timeoutMs: 2000, what: 'failure sent' });
    await pollUntil(async () => (await A.views([{ ...t, forced: 'auto' }]))[0]!.consecutiveFailures === 1, {
      timeoutMs: 2000,
      what: 'cf 1',
    });
    A.report(t, 'success', false);
    await pollUntil(async () => (await A.views([{ ...t, forced: 'auto' }]))[0]!.consecutiveFailures === 0, {
      timeoutMs: 900, // before the next flush could have done it
      what: 'cf reset by the immediate success',
    });
  });

  // last: kills this describe's Redis
  it('Redis gone: report never throws, a known closed target is still allowed at once, an unknown one after the failed read; shutdown does not wait', async () => {
    const known = target();
    expect(await admitNow(A, known)).toBe('allow');
    await redis.kill();
    expect(() => A.report(known, 'failure', false)).not.toThrow();
    expect(() => A.report(known, 'success', false)).not.toThrow();
    expect(() => A.report(known, 'success', true)).not.toThrow();
    expect(A.admit(known, 'auto')).toBe('allow');
    const started = Date.now();
    expect(await admitNow(A, target())).toBe('allow');
    expect(Date.now() - started).toBeLessThan(3000);
    const [v] = await A.views([{ ...known, forced: 'auto' }]);
    expect(v!.state).toBe('closed');
    const closing = Date.now();
    await Promise.all(apps.map((a) => a.close()));
    apps = [];
    expect(Date.now() - closing).toBeLessThan(5000);
  });
});

async function evalshaCalls(client: Redis): Promise<number> {
  const info = await client.info('commandstats');
  let n = 0;
  for (const m of info.matchAll(/cmdstat_(evalsha|eval):calls=(\d+)/g)) n += Number(m[2]);
  return n;
}

describe('BreakerService: two instances on a Redis Cluster (REDIS_CLUSTER_NODES)', () => {
  let cluster: OwnRedisCluster;
  let apps: TestGateway['app'][] = [];
  let cleanup: () => Promise<void> = async () => undefined;

  beforeAll(async () => {
    cluster = await OwnRedisCluster.start();
    const isolated = await isolatedEnv('distributed', BREAKER_ENV);
    cleanup = isolated.cleanup;
    const env: Record<string, string> = { ...isolated.env, REDIS_CLUSTER_NODES: cluster.addresses.join(',') };
    delete env.REDIS_URL;
    for (let i = 0; i < 2; i++) {
      const app = await createApp(loadConfig(env));
      await app.init();
      apps.push(app);
    }
  }, 120_000);
  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
    apps = [];
    await cluster?.stop();
    await cleanup();
  });

  it('the record lives in the provider’s slot: open on both, one probe, closed on both', async () => {
    await openOnAProbeClosesOnBoth(apps[0]!.get(BreakerService), apps[1]!.get(BreakerService));
  });
});

describe('BreakerService: embedded (LocalDb)', () => {
  let gw: TestGateway;
  let b: BreakerService;

  beforeAll(async () => {
    gw = await startGateway('embedded', BREAKER_ENV);
    b = gw.app.get(BreakerService);
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
  });

  it('opens after the failures, one probe among concurrent claims, closes on its success', async () => {
    const t = target();
    await failUntilOpen(b, t);
    expect(b.admit(t, 'auto')).toBe('deny');
    await new Promise((r) => setTimeout(r, 900));
    const answers = await raceClaims([b, b], t);
    expect(answers.filter((a) => a === 'probe')).toHaveLength(1);
    expect(answers.filter((a) => a === 'deny')).toHaveLength(5);
    b.report(t, 'success', true);
    await pollUntil(() => b.admit(t, 'auto') === 'allow', { timeoutMs: 5000, what: 'closed' });
  });

  it('a failed probe opens it again', async () => {
    const t = target();
    await failUntilOpen(b, t);
    await new Promise((r) => setTimeout(r, 900));
    expect(await admitNow(b, t)).toBe('probe');
    b.report(t, 'failure', true);
    await pollUntil(async () => (await b.views([{ ...t, forced: 'auto' }]))[0]!.state === 'open', {
      timeoutMs: 5000,
      what: 'open again',
    });
    expect(b.admit(t, 'auto')).toBe('deny');
  });
});
