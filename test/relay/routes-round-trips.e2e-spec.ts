import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer } from '../support/auth.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';
import { OwnRedis } from '../support/redis-server.js';

/**
 * Leases still held in this gateway's key pool (the members of every key's in-flight set). 0 once
 * every release has run in Redis: a condition to wait on instead of a fixed sleep, so that no
 * earlier request's release is counted as this one's (MONITOR is a second connection: its lines
 * say nothing about what the gateway's own connection has still to send).
 */
async function leasesHeld(direct: Redis, prefix: string): Promise<number> {
  let held = 0;
  for (const key of await direct.keys(`${prefix}:kp:*:inf`)) held += await direct.zcard(key);
  return held;
}

async function untilNoLease(direct: Redis, prefix: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await leasesHeld(direct, prefix)) > 0) {
    if (Date.now() > deadline) throw new Error('a lease was never released');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Waits until `scripts` has n entries (the request's scripts, seen on MONITOR), then a quiet period for any extra. */
async function untilSeen(scripts: unknown[], n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (scripts.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 300));
}

/**
 * A routed request whose primary target has headroom costs the store what a request without a
 * route costs: the admission (client limits + gates + key selection) in one EVALSHA, the release
 * in one more — no extra round trip for the route or its breaker. Counted on a MONITOR connection
 * (on a Redis of the test's own), as round-trips.e2e-spec.ts does. The
 * breaker's periodic flush of the successes it counted in process (`brk:` keys, at most one per
 * target per flush interval, whatever the traffic) is not a request's and is left out.
 */
describe('round trips of one uncontended routed request (distributed)', () => {
  let relay: RelayFixture;
  let prefix: string;
  // A Redis of its own: MONITOR on the shared one sees (and chokes on) other test files' traffic.
  let redis: OwnRedis;
  let direct: Redis;

  beforeAll(async () => {
    redis = await OwnRedis.start();
    direct = new Redis(redis.url);
    relay = await startRelay('distributed', {
      keys: [{ key: 'sk-rrt-1' }],
      // the exact per-request path by design (its EVALSHA and keys on MONITOR): local grants off
      env: { ADAPTIVE_FLUSH_MS: '600000', REDIS_URL: redis.url, ADMISSION_GRANTS: 'off' },
    });
    prefix = relay.gw.env.REDIS_PREFIX!;
    const created = await adminCall(relay.gw, relay.adminKey, 'POST', '/api/admin/routes', {
      model: 'rt-alias',
      targets: [{ provider_id: relay.providerId, model: relay.fake.models[0], tier: 1 }],
    });
    expect(created.status).toBe(201);
  });
  afterAll(async () => {
    direct?.disconnect();
    await relay?.close();
    await redis?.stop();
  });

  const send = (model: string) =>
    fetch(`${relay.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(relay.adminKey),
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    });

  async function scriptsOf(model: string): Promise<string[][]> {
    await untilNoLease(direct, prefix); // the earlier requests' releases have all run
    const monitor = await new Redis(redis.url).monitor();
    const scripts: string[][] = [];
    monitor.on('monitor', (_time: string, args: unknown[]) => {
      const words = args.map(String);
      const cmd = words[0]!.toLowerCase();
      if ((cmd === 'evalsha' || cmd === 'eval') && words.some((w) => w.startsWith(`${prefix}:`))) {
        const keys = words.slice(3, 3 + Number(words[2])).map((k) => k.slice(prefix.length + 1));
        if (!keys.every((k) => k.startsWith('brk:'))) scripts.push(keys);
      }
    });
    try {
      await new Promise((r) => setTimeout(r, 100));
      const res = await send(model);
      expect(res.status).toBe(200);
      expect(res.headers.get('x-floodgate-route-target')).toBe(
        model === 'rt-alias' ? `fake/${relay.fake.models[0]}` : null,
      );
      await res.text();
      await untilSeen(scripts, 2); // the release after the answer
    } finally {
      monitor.disconnect();
    }
    return scripts;
  }

  it('the same two EVALSHA as without a route', async () => {
    for (let i = 0; i < 3; i++) {
      expect((await send('rt-alias')).status).toBe(200);
      expect((await send(relay.fake.models[0]!)).status).toBe(200);
    }
    const plain = await scriptsOf(relay.fake.models[0]!);
    const routed = await scriptsOf('rt-alias');
    expect(plain).toHaveLength(2);
    expect(routed, JSON.stringify(routed)).toHaveLength(2);
  });
});
