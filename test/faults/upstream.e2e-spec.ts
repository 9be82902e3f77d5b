import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import { newApiKey } from '../support/auth.js';
import {
  addProvider,
  chat,
  dropClientConnections,
  dropUpstreamConnections,
  leakProblems,
  openStream,
  pollUntil,
  readSse,
} from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { startGateway, type TestGateway } from '../support/gateway.js';

/**
 * The upstream misbehaves: 429 storms, 500s, timeouts, a slow first byte, a stream cut mid-way.
 * Each case has its own provider (model `<case>-model`) so cooldowns never leak between cases.
 * Common pass criterion: the client sees the documented status in the error shape (or a stream
 * terminated by an error event), never a 500, and every slot is released — each key's in-flight
 * count (KeyPoolService.windows, the shared store) is back to 0 within 1 s.
 */
describe('upstream faults (distributed)', () => {
  let gw: TestGateway;
  let fake: FakeProvider;
  const adminKey = newApiKey();

  beforeAll(async () => {
    fake = await FakeProvider.start();
    gw = await startGateway('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_TIMEOUT_MS: '2000',
      // a cooldown longer than the wait timeout is answered at once (no queueing in these cases)
      QUEUE_TIMEOUT_NORMAL_MS: '5000',
    });
  });
  afterAll(async () => {
    dropClientConnections(gw);
    await gw?.close();
    await fake?.close();
  });

  async function setup(name: string, keys: number, provider: Record<string, unknown> = {}) {
    const values = Array.from({ length: keys }, (_, i) => `sk-${name}-${i}`);
    const created = await addProvider(
      gw,
      adminKey,
      fake,
      values.map((key) => ({ key, max_concurrent: 10 })),
      { models: [`${name}-model`], ...provider },
    );
    return { ...created, values, model: `${name}-model` };
  }

  /** Every key's in-flight count back to 0 within 1 s (returns how long it took). */
  async function released(providerId: string, keyIds: string[]): Promise<number> {
    const pool = gw.app.get(KeyPoolService);
    const { ms } = await pollUntil(
      async () => (await pool.windows(providerId, keyIds)).every((w) => w.inFlight === 0),
      { timeoutMs: 1000, intervalMs: 10, what: 'every key to have nothing in flight' },
    );
    return ms;
  }

  const upstreamFor = (model: string) => fake.requests.filter((r) => r.body?.model === model);
  const perClientRequest = (model: string) => {
    const counts = new Map<string, number>();
    for (const r of upstreamFor(model)) {
      const id = String(r.headers['x-request-id']);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    return [...counts.values()];
  };

  it('429 storm on every key: each client gets 429 + Retry-After, ≤ 2 upstream attempts per request, then keys rest (no upstream traffic), slots released', async () => {
    const p = await setup('storm', 2);
    fake.when({ model: p.model, reply: FakeProvider.rateLimited(20) });
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => chat(gw.url, adminKey, `storm-${i}`, { model: p.model })),
    );
    console.log(
      `[faults] 429 storm: ${answers.map((a) => a.body.error?.code).join(' ')}; upstream saw ${upstreamFor(p.model).length}`,
    );
    for (const a of answers) {
      expect(a.status).toBe(429);
      expect(a.body.error.type).toBe('rate_limit_error');
      expect(Number(a.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(a.headers.get('x-should-retry')).toBe('true');
      expect(leakProblems(a.text, p.values)).toEqual([]);
    }
    expect(Math.max(...perClientRequest(p.model))).toBeLessThanOrEqual(2);
    expect(upstreamFor(p.model).length).toBeLessThanOrEqual(16);
    await released(p.providerId, p.keyIds);

    // the storm is remembered: keys cool down, the next request is refused without touching the upstream
    const seen = upstreamFor(p.model).length;
    const next = await chat(gw.url, adminKey, 'storm-after', { model: p.model });
    expect(next.status).toBe(429);
    expect(next.body.error.code).toBe('upstream_keys_cooling');
    const retryAfter = Number(next.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(20);
    expect(upstreamFor(p.model).length).toBe(seen);
  });

  it('500s: one key failing → retried on the other, client 200; every key failing → 502 upstream_error with x-should-retry, exactly 2 attempts; slots released', async () => {
    const p = await setup('fivexx', 2);
    fake.when({ model: p.model, key: p.values[0], reply: FakeProvider.serverError(500) });
    for (let i = 0; i < 6; i++) {
      const a = await chat(gw.url, adminKey, `half-${i}`, { model: p.model });
      expect(a.status).toBe(200);
      expect(a.headers.get('x-floodgate-provider-key')).toBe(p.keyIds[1]);
    }
    expect(Math.max(...perClientRequest(p.model))).toBeLessThanOrEqual(2);
    await released(p.providerId, p.keyIds);

    fake.when({ model: p.model, reply: FakeProvider.serverError(503) });
    const before = upstreamFor(p.model).length;
    for (let i = 0; i < 3; i++) {
      const a = await chat(gw.url, adminKey, `all-${i}`, { model: p.model });
      expect(a.status).toBe(502);
      expect(a.body.error.type).toBe('upstream_error');
      expect(a.headers.get('x-should-retry')).toBe('true');
      expect(leakProblems(a.text, p.values)).toEqual([]);
    }
    expect(upstreamFor(p.model).length - before).toBe(6);
    await released(p.providerId, p.keyIds);
  });

  it('timeout: no answer within timeout_ms (1 s) → 504 upstream_timeout_error after ~1 s, one attempt, the upstream request closed ≤ 1 s after, slot released', async () => {
    const p = await setup('timeout', 2, { timeout_ms: 1000 });
    fake.when({ model: p.model, reply: { delayMs: 3000 } });
    const a = await chat(gw.url, adminKey, 'slow', { model: p.model });
    const answeredAt = Date.now();
    expect(a.status).toBe(504);
    expect(a.body.error.type).toBe('upstream_timeout_error');
    expect(a.ms).toBeGreaterThanOrEqual(950);
    expect(a.ms).toBeLessThan(2500);
    expect(upstreamFor(p.model)).toHaveLength(1); // timeouts are not retried
    const { value: seen } = await pollUntil(
      () => upstreamFor(p.model)[0]!.endedAt !== undefined && upstreamFor(p.model)[0],
      {
        timeoutMs: 1000,
        what: 'the upstream request to end',
      },
    );
    expect(seen.closedEarly).toBe(true);
    expect(seen.endedAt! - answeredAt).toBeLessThanOrEqual(1000);
    await released(p.providerId, p.keyIds);
  });

  it('slow first byte: 1.2 s before the status line (under timeout_ms) → the stream still completes, one attempt; beyond timeout_ms → 504 before any byte; slots released', async () => {
    const p = await setup('slowfirst', 1, { timeout_ms: 2500 });
    fake.when({ model: p.model, times: 1, reply: { delayMs: 1200 } });
    const started = performance.now();
    const res = await openStream(gw.url, adminKey, 'slow-first', { model: p.model });
    expect(res.status).toBe(200);
    const sse = await readSse(res);
    expect(sse.done).toBe(true);
    expect(sse.error).toBeNull();
    expect(sse.firstByteAt! - started).toBeGreaterThanOrEqual(1150);
    expect(upstreamFor(p.model)).toHaveLength(1);
    await released(p.providerId, p.keyIds);

    fake.when({ model: p.model, times: 1, reply: { delayMs: 4000 } });
    const late = await openStream(gw.url, adminKey, 'too-slow', { model: p.model });
    const text = await late.text();
    expect(late.status).toBe(504);
    expect(JSON.parse(text).error.type).toBe('upstream_timeout_error');
    expect(upstreamFor(p.model)).toHaveLength(2);
    await released(p.providerId, p.keyIds);
  });

  it('the upstream drops the connection mid-stream → the client stream ends with an error event (upstream_stream_interrupted, no [DONE]), slot released', async () => {
    const p = await setup('drop', 1);
    fake.when({
      model: p.model,
      reply: { chunkDelayMs: 150, text: Array.from({ length: 30 }, (_, i) => `w${i}`).join(' ') },
    });
    const res = await openStream(gw.url, adminKey, 'drop', { model: p.model });
    expect(res.status).toBe(200);
    let dropped = 0;
    const sse = await readSse(res, (events) => {
      const deltas = events.filter((e) => (e as any)?.choices?.[0]?.delta?.content);
      if (deltas.length === 2 && dropped === 0) dropped = dropUpstreamConnections(fake);
      return false;
    });
    expect(dropped).toBeGreaterThan(0);
    expect(sse.done).toBe(false);
    expect(sse.error).toMatchObject({ type: 'upstream_error', code: 'upstream_stream_interrupted' });
    expect(sse.events.filter((e) => (e as any)?.choices?.[0]?.delta?.content).length).toBeLessThan(30);
    await released(p.providerId, p.keyIds);
  });
});
