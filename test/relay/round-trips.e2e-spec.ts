import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey } from '../support/auth.js';
import { startRelay, type RelayFixture } from '../support/relay.js';
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
 * Issue 14: one store round trip per request on the uncontended path. The relay's admission — the
 * client rate limits, the provider's gates and the key selection with its lease — is ONE script run
 * (EVALSHA) in distributed mode. Counted on a MONITOR connection, keeping only the commands that
 * name this gateway's own key prefix (on a Redis of the test's own).
 */
describe('round trips of one uncontended relayed request (distributed)', () => {
  let relay: RelayFixture;
  let prefix: string;
  // A Redis of its own: MONITOR on the shared one sees (and chokes on) other test files' traffic.
  let redis: OwnRedis;
  let direct: Redis;

  beforeAll(async () => {
    redis = await OwnRedis.start();
    direct = new Redis(redis.url);
    relay = await startRelay('distributed', {
      keys: [{ key: 'sk-rt-1' }, { key: 'sk-rt-2' }],
      // Adaptive's periodic flush (not per request) stays out of the counted second
      // the exact per-request path by design (its EVALSHA and keys on MONITOR): local grants off
      env: { ADAPTIVE_FLUSH_MS: '600000', REDIS_URL: redis.url, ADMISSION_GRANTS: 'off' },
    });
    prefix = relay.gw.env.REDIS_PREFIX!;
  });
  afterAll(async () => {
    direct?.disconnect();
    await relay?.close();
    await redis?.stop();
  });

  const send = (key = relay.adminKey) =>
    fetch(`${relay.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(key),
      body: JSON.stringify({ model: relay.fake.models[0], messages: [{ role: 'user', content: 'hi' }] }),
    });

  /** The scripts one request runs (each as its KEYS, without the prefix), counted on MONITOR. */
  async function scriptsOf(key: string): Promise<string[][]> {
    await untilNoLease(direct, prefix); // the earlier requests' releases have all run
    const monitor = await new Redis(redis.url).monitor();
    const scripts: string[][] = [];
    monitor.on('monitor', (_time: string, args: unknown[]) => {
      const words = args.map(String);
      const cmd = words[0]!.toLowerCase();
      if ((cmd === 'evalsha' || cmd === 'eval') && words.some((w) => w.startsWith(`${prefix}:`)))
        scripts.push(words.slice(3, 3 + Number(words[2])).map((k) => k.slice(prefix.length + 1)));
    });
    try {
      await new Promise((r) => setTimeout(r, 100));
      const res = await send(key);
      expect(res.status).toBe(200);
      await res.text();
      await untilSeen(scripts, 2); // the release/report after the answer
    } finally {
      monitor.disconnect();
    }
    return scripts;
  }

  it("a client key with a TPM limit: its token charge rides in the answer path's one script (2 EVALSHA in all)", async () => {
    const tpm = await createUserWithKey(relay.gw, relay.adminKey, 'user', {
      key: { limits: { tpm: 1_000_000 } },
    });
    for (let i = 0; i < 3; i++) expect((await send(tpm.key)).status).toBe(200);
    const scripts = await scriptsOf(tpm.key);
    const detail = JSON.stringify(scripts);
    expect(scripts.length, detail).toBe(2);
    const answer = scripts.find((keys) => !keys.some((k) => /^kp:\{[^}]+\}:seq$/.test(k)))!;
    expect(answer, detail).toBeDefined();
    // the release (the key's in-flight set) and the client key's budget log and sum, together
    expect(
      answer.some((k) => /^kp:\{[^}]+\}:k:[^:]+:inf$/.test(k)),
      detail,
    ).toBe(true);
    expect(
      answer.filter((k) => k.startsWith(`rl:{key:${tpm.keyId}}`)),
      detail,
    ).toHaveLength(2);
  });

  it('the client limits and the lease are decided by the same single EVALSHA; the answer path is one more: 2 EVALSHA in all', async () => {
    for (let i = 0; i < 3; i++) expect((await send()).status).toBe(200); // warm: scripts loaded, caches filled
    await untilNoLease(direct, prefix); // their releases have all run

    const monitor = await new Redis(redis.url).monitor();
    const scripts: string[][] = [];
    monitor.on('monitor', (_time: string, args: unknown[]) => {
      const words = args.map(String);
      const cmd = words[0]!.toLowerCase();
      if ((cmd === 'evalsha' || cmd === 'eval') && words.some((w) => w.startsWith(`${prefix}:`)))
        scripts.push(words.slice(3, 3 + Number(words[2])));
    });
    try {
      await new Promise((r) => setTimeout(r, 100));
      const res = await send();
      expect(res.status).toBe(200);
      expect(res.headers.get('x-ratelimit-limit')).not.toBeNull();
      await res.text();
      await untilSeen(scripts, 2); // the release/report after the answer
    } finally {
      monitor.disconnect();
    }

    const clientLimits = scripts.filter((keys) => keys.some((k) => k.startsWith(`${prefix}:rl:`)));
    const leases = scripts.filter((keys) => keys.some((k) => /:kp:\{[^}]+\}:seq$/.test(k)));
    const detail = JSON.stringify(scripts.map((keys) => keys.map((k) => k.slice(prefix.length + 1))));
    expect(clientLimits, detail).toHaveLength(1);
    expect(leases, detail).toHaveLength(1);
    expect(clientLimits[0], 'client limits and lease in one script').toBe(leases[0]);
    // issue 18: the release, the key's windows and Adaptive's retreat window in one script
    const answers = scripts.filter((keys) => !keys.some((k) => /:kp:\{[^}]+\}:seq$/.test(k)));
    expect(answers, detail).toHaveLength(1);
    expect(
      answers[0]!.some((k) => /:ad:\{[^}]+\}:rw$/.test(k)),
      detail,
    ).toBe(true);
    expect(scripts.length, detail).toBe(2);
  });
});
