import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey, newApiKey } from '../support/auth.js';
import { spawnLive } from '../support/cluster.js';
import { getJson, isolatedEnv, type GatewayProcess } from '../support/gateway.js';
import { OwnRedisCluster } from '../support/redis-cluster.js';

/**
 * Burst exactness on a Redis Cluster with real gateway processes (`node dist/src/main.js`, started
 * with REDIS_CLUSTER_NODES and no REDIS_URL), as test/faults/burst-exactness.e2e-spec.ts does on one
 * Redis: RUNS bursts split over two instances at a key's limit → exactly the limit admitted, every
 * 200 decided by Redis (X-RateLimit-* headers), everything else 429 or a 503 shed; then a burst at a
 * user's limit over three of the user's keys → exactly the user's limit, and the key windows on the
 * cluster hold only the admitted requests (the user step's refusals rolled the key steps back).
 */
const RUNS = 5;
const BURST = 300;
const KEY_RPM = 20;
const USER_RPM = 30;

interface Answer {
  status: number;
  limitHeader: string | null;
}

async function hit(url: string, key: string): Promise<Answer> {
  try {
    const res = await fetch(`${url}/api/me`, { headers: bearer(key, false) });
    await res.arrayBuffer();
    return { status: res.status, limitHeader: res.headers.get('x-ratelimit-limit') };
  } catch {
    return { status: 0, limitHeader: null };
  }
}

function tally(answers: Answer[]) {
  const ok = answers.filter((x) => x.status === 200);
  return {
    admitted: ok.length,
    headerless: ok.filter((x) => x.limitHeader === null).length,
    refusedOrShed: answers.filter((x) => x.status === 429 || x.status === 503).length,
    other: answers.filter((x) => ![200, 429, 503].includes(x.status)).length,
  };
}

describe('burst exactness on a Redis Cluster (two gateway processes, REDIS_CLUSTER_NODES)', () => {
  let cluster: OwnRedisCluster;
  let redis: Cluster;
  let cleanup: () => Promise<void>;
  let prefix: string;
  let a: GatewayProcess;
  let b: GatewayProcess;
  const adminKey = newApiKey();

  beforeAll(async () => {
    cluster = await OwnRedisCluster.start();
    redis = cluster.client();
    const isolated = await isolatedEnv('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      LOG_LEVEL: 'warn',
      RATE_LIMIT_FAILURE_MODE: 'open',
      // as in burst-exactness: a Redis starved of CPU on this shared 2-core machine must not count as silent
      RATE_LIMIT_TIMEOUT_MS: '500',
      RATE_LIMIT_USER_RPM: String(USER_RPM),
      RATE_LIMIT_IP_RPM: '1000000',
      REDIS_CLUSTER_NODES: cluster.addresses.join(','),
    });
    delete isolated.env.REDIS_URL;
    prefix = isolated.env.REDIS_PREFIX!;
    cleanup = isolated.cleanup;
    a = await spawnLive(isolated.env); // runs the migrations and creates the admin first
    b = await spawnLive(isolated.env);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    redis?.disconnect();
    await cluster?.stop();
    await cleanup?.();
  }, 60_000);

  it(`${RUNS} bursts of ${BURST} at a key's ${KEY_RPM}/min: exactly ${KEY_RPM} admitted every time`, async () => {
    const results: ReturnType<typeof tally>[] = [];
    for (let run = 0; run < RUNS; run++) {
      const { key } = await createUserWithKey(a, adminKey, 'user', { key: { limits: { rpm: KEY_RPM } } });
      results.push(
        tally(await Promise.all(Array.from({ length: BURST }, (_, i) => hit(i % 2 ? b.url : a.url, key)))),
      );
    }
    const failOpen = [a.output(), b.output()]
      .join('\n')
      .split('\n')
      .filter((l) => /failing open/.test(l));
    console.log(
      `[cluster processes] admitted per run ${results.map((r) => r.admitted).join(' ')}; fail-open lines ${failOpen.length}`,
    );
    for (const r of results)
      expect(r).toEqual({ admitted: KEY_RPM, headerless: 0, refusedOrShed: BURST - KEY_RPM, other: 0 });
    expect(failOpen).toEqual([]);
  });

  it(`a burst at a user's ${USER_RPM}/min over three of their keys: exactly ${USER_RPM}, no phantom places in the key windows`, async () => {
    const first = await createUserWithKey(a, adminKey, 'user', { key: { limits: { rpm: 1000 } } });
    const keys = [first.key];
    const ids = [first.keyId];
    for (let i = 0; i < 2; i++) {
      const k = await getJson(`${a.url}/api/admin/users/${first.user.id}/keys`, {
        method: 'POST',
        headers: bearer(adminKey),
        body: JSON.stringify({ name: `more-${i}`, limits: { rpm: 1000 } }),
      });
      expect(k.status).toBe(201);
      keys.push(k.body.key);
      ids.push(k.body.id);
    }
    const r = tally(
      await Promise.all(
        Array.from({ length: BURST }, (_, i) => hit(i % 2 ? b.url : a.url, keys[i % keys.length]!)),
      ),
    );
    expect(r).toEqual({ admitted: USER_RPM, headerless: 0, refusedOrShed: BURST - USER_RPM, other: 0 });
    const perKey = await Promise.all(ids.map((id) => redis.zcard(`${prefix}:rl:{key:${id}}:key:sw`)));
    expect(perKey.reduce((s, n) => s + n, 0)).toBe(USER_RPM);
    expect(await redis.zcard(`${prefix}:rl:{user:${first.user.id}}:user:sw`)).toBe(USER_RPM);
  });
});
