import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newApiKey } from '../support/auth.js';
import { addProvider, chat, spawnLive } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { isolatedEnv, type GatewayProcess } from '../support/gateway.js';
import { OwnRedis } from '../support/redis-server.js';

/**
 * SIGTERM while a client holds a connection on which it has not sent a request yet (HTTP client pools
 * and load balancers pre-connect; undici reconnects after an aborted request) and another request is
 * in flight. Pass criteria: the in-flight request completes with 200; the process exits 0 within 5 s
 * (SHUTDOWN_TIMEOUT_MS is 10 s here: a silent connection must not hold the drain until it expires).
 */
describe('graceful shutdown with a silent client connection (real process)', () => {
  let fake: FakeProvider;
  let gw: GatewayProcess;
  let cleanup: () => Promise<void>;
  const adminKey = newApiKey();

  beforeAll(async () => {
    fake = await FakeProvider.start();
    const isolated = await isolatedEnv('embedded', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '1000000',
      SHUTDOWN_TIMEOUT_MS: '10000',
    });
    cleanup = isolated.cleanup;
    gw = await spawnLive(isolated.env);
  });
  afterAll(async () => {
    await gw?.stop();
    await fake?.close();
    await cleanup?.();
  });

  it('SIGTERM: the in-flight request completes, the silent connection does not hold the exit (exit 0 ≤ 5 s)', async () => {
    await addProvider(gw, adminKey, fake, [{ key: 'sk-shutdown', max_concurrent: 5 }]);
    fake.when({ reply: { delayMs: 1500 } });
    const inFlight = chat(gw.url, adminKey, 'draining');
    await new Promise<void>((r) => {
      const check = () => (fake.requests.length > 0 ? r() : setTimeout(check, 10));
      check();
    });
    const silent = net.connect(Number(new URL(gw.url).port), '127.0.0.1');
    silent.on('error', () => undefined);
    await new Promise((r) => silent.once('connect', r));

    const termAt = performance.now();
    gw.proc.kill('SIGTERM');
    const answer = await inFlight;
    const code = await Promise.race([
      gw.exited,
      new Promise<'still running'>((r) => setTimeout(() => r('still running'), 12_000)),
    ]);
    const exitMs = performance.now() - termAt;
    silent.destroy();
    console.log(
      `[faults] SIGTERM with a silent connection: in-flight ${answer.status}, exit ${code} after ${exitMs.toFixed(0)} ms`,
    );
    expect(answer.status).toBe(200);
    expect(code).toBe(0);
    expect(exitMs).toBeLessThanOrEqual(5000);
  });
});

/**
 * SIGTERM while Redis is unreachable (distributed mode; a rollout during a Redis outage). Nothing is
 * in flight, so the drain has nothing to wait for: closing the modules must not wait for Redis to
 * come back (an UNSUBSCRIBE queued on the reconnecting subscriber did, until SHUTDOWN_TIMEOUT_MS
 * killed the process with exit 1). Pass criteria: exit 0 within 5 s (SHUTDOWN_TIMEOUT_MS 10 s).
 */
describe('graceful shutdown while Redis is down (real process)', () => {
  let redis: OwnRedis;
  let gw: GatewayProcess;
  let cleanup: () => Promise<void>;
  const adminKey = newApiKey();

  beforeAll(async () => {
    redis = await OwnRedis.start();
    const isolated = await isolatedEnv('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      SHUTDOWN_TIMEOUT_MS: '10000',
    });
    cleanup = isolated.cleanup;
    gw = await spawnLive({ ...isolated.env, REDIS_URL: redis.url });
  }, 60_000);
  afterAll(async () => {
    await gw?.stop();
    await redis?.stop();
    await cleanup?.();
  });

  it('SIGTERM with Redis killed: exit 0 within 5 s, not at SHUTDOWN_TIMEOUT_MS', async () => {
    await redis.kill();
    await new Promise((r) => setTimeout(r, 500)); // the connections notice and start reconnecting
    const termAt = performance.now();
    gw.proc.kill('SIGTERM');
    const code = await Promise.race([
      gw.exited,
      new Promise<'still running'>((r) => setTimeout(() => r('still running'), 12_000)),
    ]);
    const exitMs = performance.now() - termAt;
    console.log(`[faults] SIGTERM with Redis down: exit ${code} after ${exitMs.toFixed(0)} ms`);
    expect(code).toBe(0);
    expect(exitMs).toBeLessThanOrEqual(5000);
  });
});
