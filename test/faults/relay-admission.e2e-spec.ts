import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app/create-app.js';
import { loadConfig } from '../../src/config/app-config.js';
import { bearer, createUserWithKey, newApiKey } from '../support/auth.js';
import {
  addProvider,
  chat,
  dropClientConnections,
  FaultProxy,
  pollUntil,
  sleep,
} from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { isolatedEnv } from '../support/gateway.js';
import { TEST_REDIS_URL } from '../support/services.js';

/**
 * The relay's combined admission (client limits + gates + lease in one script) keeps the limiter's
 * contract on /v1 routes (docs/rate-limit.md, docs/reliability.md), distributed, through a TCP proxy
 * in front of the test Redis (killed here, never the shared Redis itself):
 * - a client-limit refusal is the 429 of before (headers, body, Retry-After) and takes no lease: the
 *   upstream never sees it; a 400 before admission consumes no client quota;
 * - Redis unavailable: RATE_LIMIT_FAILURE_MODE=closed → 503 rate_limiter_unavailable; open → the
 *   lease still needs Redis → 503 dependency_unavailable; both with Retry-After, never 500; served
 *   again within 5 s of Redis' return.
 */
interface Instance {
  app: NestFastifyApplication;
  url: string;
}

describe('relay admission: client limits in the lease script (distributed)', () => {
  let proxy: FaultProxy;
  let cleanup: () => Promise<void>;
  let open: Instance;
  let closed: Instance;
  let fake: FakeProvider;
  const adminKey = newApiKey();

  beforeAll(async () => {
    proxy = await FaultProxy.start(TEST_REDIS_URL);
    fake = await FakeProvider.start();
    const isolated = await isolatedEnv('distributed');
    cleanup = isolated.cleanup;
    const env = {
      ...isolated.env,
      REDIS_URL: proxy.url(isolated.env.REDIS_URL!),
      ADMIN_BOOTSTRAP_KEY: adminKey,
    };
    const boot = async (mode: 'open' | 'closed'): Promise<Instance> => {
      const app = await createApp(loadConfig({ ...env, RATE_LIMIT_FAILURE_MODE: mode }));
      await app.listen({ port: 0, host: '127.0.0.1' });
      return { app, url: `http://127.0.0.1:${(app.getHttpServer().address() as net.AddressInfo).port}` };
    };
    open = await boot('open');
    closed = await boot('closed');
    await addProvider(open, adminKey, fake, [{ key: 'sk-admission-1', max_concurrent: 50 }]);
  });
  afterAll(async () => {
    await proxy?.revive().catch(() => undefined);
    dropClientConnections(open, closed);
    await Promise.all([open?.app.close(), closed?.app.close()]);
    await proxy?.close();
    await fake?.close();
    await cleanup?.();
  });

  it('at the key limit: the same 429 as before, no lease taken; 400s before admission cost no quota', async () => {
    const client = (await createUserWithKey(open, adminKey, 'developer', { key: { limits: { rpm: 3 } } }))
      .key;
    for (let i = 0; i < 2; i++) {
      const bad = await fetch(`${open.url}/v1/chat/completions`, {
        method: 'POST',
        headers: bearer(client),
        body: JSON.stringify({ messages: [] }),
      });
      expect(bad.status).toBe(400);
      await bad.arrayBuffer();
    }
    const sentBefore = fake.requests.length;
    const answers = [];
    // both instances share the count (one Redis): exact across them
    for (let i = 0; i < 3; i++) answers.push(await chat(i % 2 ? closed.url : open.url, client, `ok-${i}`));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(answers.map((a) => a.headers.get('x-ratelimit-remaining'))).toEqual(['2', '1', '0']);
    expect(answers[0]!.headers.get('x-ratelimit-limit')).toBe('3');
    expect(answers[0]!.headers.get('ratelimit-policy')).toBeTruthy();

    const refused = await chat(open.url, client, 'over');
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({
      type: 'rate_limit_error',
      code: 'rate_limit_exceeded',
      param: 'key',
    });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get('x-ratelimit-remaining')).toBe('0');
    expect(refused.headers.get('x-ratelimit-limit')).toBe('3');
    expect(refused.headers.get('ratelimit')).toBeTruthy();
    expect(fake.requests.length - sentBefore).toBe(3);
  });

  it('Redis killed: closed → 503 rate_limiter_unavailable, open → 503 dependency_unavailable (Retry-After, never 500); back within 5 s', async () => {
    const client = (
      await createUserWithKey(open, adminKey, 'developer', { key: { limits: { rpm: 100000 } } })
    ).key;
    await pollUntil(async () => (await chat(open.url, client, 'ready-open')).status === 200, {
      timeoutMs: 5000,
      what: 'the open instance to serve',
    });
    await pollUntil(async () => (await chat(closed.url, client, 'ready-closed')).status === 200, {
      timeoutMs: 5000,
      what: 'the closed instance to serve',
    });
    await proxy.kill();
    const during = {
      open: [] as Awaited<ReturnType<typeof chat>>[],
      closed: [] as Awaited<ReturnType<typeof chat>>[],
    };
    try {
      await sleep(200);
      for (let i = 0; i < 4; i++) {
        during.open.push(await chat(open.url, client, `open-${i}`));
        during.closed.push(await chat(closed.url, client, `closed-${i}`));
        await sleep(50);
      }
    } finally {
      await proxy.revive();
    }
    for (const a of [...during.open, ...during.closed]) {
      expect(a.status).toBe(503);
      expect(Number(a.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    expect(during.closed.map((a) => a.body.error.code)).toEqual(Array(4).fill('rate_limiter_unavailable'));
    expect(during.open.map((a) => a.body.error.code)).toEqual(Array(4).fill('dependency_unavailable'));
    for (const inst of [open, closed]) {
      await pollUntil(async () => (await chat(inst.url, client, 'after')).status === 200, {
        timeoutMs: 5000,
        intervalMs: 100,
        what: 'the relay to serve again after Redis returned',
      });
    }
  });
});
