import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, getJson, isolatedEnv, spawnGateway, type GatewayProcess } from '../support/gateway.js';
import { FreezableProxy, viaProxy } from '../support/tcp-proxy.js';
import { TEST_POSTGRES_URL, TEST_REDIS_URL } from '../support/services.js';

const running: GatewayProcess[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop()));
});

function start(env: Record<string, string>): GatewayProcess {
  const p = spawnGateway(env);
  running.push(p);
  return p;
}

describe('configuration errors stop the process with one line naming the variable', () => {
  it('PORT=abc', async () => {
    const p = start({ PORT: 'abc', DATA_DIR: ':memory:' });
    expect(await p.exited).toBe(2);
    expect(p.output()).toContain(
      'floodgate: configuration error: PORT must be an integer 1-65535, got "abc"',
    );
    expect(p.output()).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('production without ENCRYPTION_KEYS, and with a short HS secret', async () => {
    const p = start({ NODE_ENV: 'production', JWT_SECRET: 'tooshort', DATA_DIR: ':memory:' });
    expect(await p.exited).toBe(2);
    expect(p.output()).toContain('ENCRYPTION_KEYS must be set in production');
    expect(p.output()).toContain('JWT_SECRET must be at least 32 characters in production, got 8');
  });
});

describe('embedded start with no configuration', () => {
  it('prints a banner with mode, URLs and docs, and serves ready', async () => {
    const port = await freePort();
    const p = start({ PORT: String(port), DATA_DIR: ':memory:', HOST: '127.0.0.1' });
    await p.waitForOutput(/is up/);
    await p.waitForOutput(/ENCRYPTION_KEYS is not set/); // logged through pino-pretty's worker: may trail the banner
    const out = p.output();
    expect(out).toContain('mode       embedded');
    expect(out).toContain(`http://127.0.0.1:${port}/docs`);
    expect(out).toContain('ENCRYPTION_KEYS is not set');
    expect((await getJson(`${p.url}/health/ready`)).status).toBe(200);
  });
});

describe('distributed mode against frozen dependencies', () => {
  let redisProxy: FreezableProxy;
  let pgProxy: FreezableProxy;
  let cleanup: () => Promise<void>;
  let env: Record<string, string>;

  beforeAll(async () => {
    const redis = new URL(TEST_REDIS_URL);
    redisProxy = new FreezableProxy(redis.hostname, Number(redis.port || 6379));
    const pg = new URL(TEST_POSTGRES_URL);
    pgProxy = new FreezableProxy(pg.hostname, Number(pg.port || 5432));
    await Promise.all([redisProxy.start(), pgProxy.start()]);
    const isolated = await isolatedEnv('distributed');
    cleanup = isolated.cleanup;
    env = {
      ...isolated.env,
      DATABASE_URL: viaProxy(isolated.env.DATABASE_URL!, pgProxy),
      REDIS_URL: viaProxy(isolated.env.REDIS_URL!, redisProxy),
      LOG_LEVEL: 'info',
    };
  });
  afterAll(async () => {
    await Promise.all([redisProxy?.close(), pgProxy?.close()]);
    await cleanup?.();
  });

  it('Redis frozen → readiness 503 within 2 s while liveness stays 200; thawed → 200', async () => {
    const port = await freePort();
    const p = start({ ...env, PORT: String(port) });
    await p.waitForOutput(/is up|floodgate started/);
    const before = await getJson(`${p.url}/health/ready`);
    expect(before.status).toBe(200);
    expect(before.body.details.redis.status).toBe('up');

    redisProxy.freeze();
    try {
      const started = Date.now();
      const frozen = await getJson(`${p.url}/health/ready`);
      expect(Date.now() - started).toBeLessThan(2000);
      expect(frozen.status).toBe(503);
      expect(frozen.body.status).toBe('error');
      expect(frozen.body.error.redis.status).toBe('down');
      expect(frozen.body.details.database.status).toBe('up');
      const again = Date.now();
      expect((await getJson(`${p.url}/health/ready`)).status).toBe(503);
      expect(Date.now() - again).toBeLessThan(2000);
      expect((await getJson(`${p.url}/health/live`)).status).toBe(200);
    } finally {
      redisProxy.thaw();
    }
    const deadline = Date.now() + 5000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = (await getJson(`${p.url}/health/ready`)).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
  });

  it('SIGTERM during a slow request: the request completes, new connections are refused, exit 0', async () => {
    const port = await freePort();
    const p = start({ ...env, PORT: String(port) });
    await p.waitForOutput(/is up|floodgate started/);
    // Freeze Postgres: the readiness ping now takes its full 1 s deadline — our slow request.
    pgProxy.freeze();
    const slow = getJson(`${p.url}/health/ready`);
    await new Promise((r) => setTimeout(r, 200));
    p.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    await expect(fetch(`${p.url}/health/live`)).rejects.toThrow(); // listener closed
    const answer = await slow;
    // an unreachable external Postgres makes readiness "degraded" (200), not 503 (src/health/dependency-health.ts)
    expect(answer.status).toBe(200);
    expect(answer.body.status).toBe('degraded');
    expect(answer.body.details.database.message).toMatch(/no answer within/);
    pgProxy.thaw(); // let the pool close cleanly
    const code = await p.exited;
    if (code !== 0) console.log(p.output());
    expect(code).toBe(0);
    expect(p.output()).toMatch(/SIGTERM received: draining/);
    expect(p.output()).toMatch(/shutdown complete/);
  });
});
