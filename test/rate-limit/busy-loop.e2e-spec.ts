import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app/create-app.js';
import { loadConfig } from '../../src/config/app-config.js';
import { requestPolicy } from '../../src/rate-limit/policies.js';
import { RateLimitService, type DecisionResult } from '../../src/rate-limit/rate-limit.service.js';
import { FaultProxy, pollUntil } from '../support/cluster.js';
import { isolatedEnv } from '../support/gateway.js';
import { TEST_REDIS_URL } from '../support/services.js';

/**
 * What "the rate limiter's Redis is unavailable" means (distributed, RATE_LIMIT_FAILURE_MODE=open,
 * RATE_LIMIT_TIMEOUT_MS=100): our own busy event loop never counts — a synchronous 300 ms busy-wait
 * while decisions are pending makes them slower, and every one of them is still decided by Redis,
 * exactly. A Redis that really is gone is: frozen (bytes stop, connection up) → `silent`; killed
 * (connection reset) → `not_connected`; each decided by the failure mode within bounded time, with
 * the cause in the decision, the counters and /metrics.
 */
const LIMIT = 20;
const PENDING = 60;

function busyWait(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // our own load: the event loop is blocked, Redis is fine
  }
}

describe('rate limiter: a busy event loop is not a Redis outage', () => {
  let proxy: FaultProxy;
  let app: NestFastifyApplication;
  let url: string;
  let svc: RateLimitService;
  let cleanup: () => Promise<void>;
  let subject = 0;

  beforeAll(async () => {
    proxy = await FaultProxy.start(TEST_REDIS_URL);
    const isolated = await isolatedEnv('distributed');
    cleanup = isolated.cleanup;
    app = await createApp(
      loadConfig({
        ...isolated.env,
        REDIS_URL: proxy.url(isolated.env.REDIS_URL!),
        RATE_LIMIT_FAILURE_MODE: 'open',
        RATE_LIMIT_TIMEOUT_MS: '100',
      }),
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(app.getHttpServer().address() as net.AddressInfo).port}`;
    svc = app.get(RateLimitService);
  });
  afterAll(async () => {
    await proxy?.thaw().catch(() => undefined);
    await proxy?.revive().catch(() => undefined);
    await app?.close();
    await proxy?.close();
    await cleanup?.();
  });

  const policy = () => [
    requestPolicy('key', 'sliding_window', LIMIT, 60_000, LIMIT, `key:busy-${++subject}`),
  ];
  const kinds = (ds: DecisionResult[]) =>
    ds.reduce<Record<string, number>>((acc, d) => ((acc[d.kind] = (acc[d.kind] ?? 0) + 1), acc), {});

  /** Decisions pending on a healthy Redis, then the loop blocked: all decided by Redis, exactly. */
  async function pendingThenBusy(when: 'same tick' | 'after the write'): Promise<void> {
    const policies = policy();
    // a few warm decisions first: the connection is up and the Redis clock is known
    for (let i = 0; i < 3; i++) expect((await svc.decide(policy())).kind).toBe('admitted');
    const before = svc.stats();
    const pending = Array.from({ length: PENDING }, () => svc.decide(policies));
    if (when === 'after the write') await new Promise((r) => setImmediate(r));
    busyWait(300);
    const decisions = await Promise.all(pending);
    const after = svc.stats();
    console.log(
      `[busy loop] ${when}: ${JSON.stringify(kinds(decisions))}; failed open ${after.failedOpen - before.failedOpen}`,
    );
    expect(decisions.filter((d) => d.kind === 'unavailable')).toEqual([]);
    expect(kinds(decisions)).toEqual({ admitted: LIMIT, limited: PENDING - LIMIT });
    expect(after.failedOpen - before.failedOpen).toBe(0);
    expect(after.storeErrors - before.storeErrors).toBe(0);
  }

  it('a 300 ms busy-wait right after the decisions were asked (same tick) does not fail open', async () => {
    await pendingThenBusy('same tick');
  });

  it('a 300 ms busy-wait while the replies are on their way does not fail open', async () => {
    await pendingThenBusy('after the write');
  });

  it('a frozen Redis is "silent" (connection ready): failure mode within bounded time, cause counted and exported; exact again after thaw', async () => {
    expect((await svc.decide(policy())).kind).toBe('admitted');
    const before = svc.stats();
    await proxy.freeze();
    let decisions: DecisionResult[];
    let tookMs: number;
    try {
      const started = performance.now();
      decisions = await Promise.all(Array.from({ length: 20 }, () => svc.decide(policy())));
      // once found silent, decisions do not wait again
      decisions.push(...(await Promise.all(Array.from({ length: 20 }, () => svc.decide(policy())))));
      tookMs = performance.now() - started;
    } finally {
      await proxy.thaw();
    }
    console.log(`[busy loop] frozen: ${JSON.stringify(kinds(decisions))} in ${tookMs.toFixed(0)} ms`);
    expect(decisions.every((d) => d.kind === 'unavailable' && d.cause === 'silent')).toBe(true);
    expect((decisions[0] as { reason: string }).reason).toMatch(/sent nothing for \d+ ms .*connection ready/);
    expect(tookMs).toBeLessThan(2000);
    const after = svc.stats();
    expect(after.failedOpen).toBe(before.failedOpen); // decide() alone applies no failure mode
    expect((after.unavailableByCause.silent ?? 0) - (before.unavailableByCause.silent ?? 0)).toBe(40);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/floodgate_rate_limit_store_unavailable_total\{[^}]*cause="silent"[^}]*\} 40/);
    // back: decided by Redis again, exactly (nothing from the frozen period was counted)
    const policies = policy();
    await pollUntil(async () => (await svc.decide(policies)).kind === 'admitted', {
      timeoutMs: 5000,
      intervalMs: 25,
      what: 'decisions from Redis after thaw',
    });
    const burst = await Promise.all(Array.from({ length: LIMIT + 5 }, () => svc.decide(policies)));
    expect(kinds(burst)).toEqual({ admitted: LIMIT - 1, limited: 6 });
  });

  it('a killed Redis is "not_connected": decided at once by the failure mode, exact again after revive', async () => {
    expect((await svc.decide(policy())).kind).toBe('admitted');
    await proxy.kill();
    let decisions: DecisionResult[] = [];
    try {
      // the reset reaches the client within a moment; from then on no decision waits
      await pollUntil(async () => (await svc.decide(policy())).kind === 'unavailable', {
        timeoutMs: 2000,
        intervalMs: 10,
        what: 'the connection loss to be seen',
      });
      decisions = await Promise.all(Array.from({ length: 20 }, () => svc.decide(policy())));
    } finally {
      await proxy.revive();
    }
    console.log(
      `[busy loop] killed: ${JSON.stringify(decisions.map((d) => (d.kind === 'unavailable' ? d.cause : d.kind)))}`,
    );
    expect(decisions.every((d) => d.kind === 'unavailable' && d.cause === 'not_connected')).toBe(true);
    expect((decisions[0] as { reason: string }).reason).toMatch(/redis connection is \w+/);
    await pollUntil(async () => (await svc.decide(policy())).kind === 'admitted', {
      timeoutMs: 5000,
      intervalMs: 50,
      what: 'decisions from Redis after revive',
    });
  });
});
