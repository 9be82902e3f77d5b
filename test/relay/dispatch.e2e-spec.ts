import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import { RelayDispatcher } from '../../src/relay/dispatcher.js';
import { bearer, newApiKey } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import { startGateways } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';

function chat(client: OpenAI, tag: string, priority: string) {
  return client.chat.completions.create(
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: tag }] },
    { headers: { 'X-Priority': priority } },
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitForDepth(fx: RelayFixture, n: number): Promise<void> {
  const dispatcher = fx.gw.app.get(RelayDispatcher);
  const deadline = Date.now() + 10_000;
  while (Object.values(await dispatcher.depth(fx.providerId)).reduce((a, b) => a + b, 0) < n) {
    if (Date.now() > deadline) throw new Error(`queue never reached ${n}`);
    await sleep(5);
  }
}

describe('priority dispatch across two instances (one upstream slot)', () => {
  let fake: FakeProvider;
  let cluster: Awaited<ReturnType<typeof startGateways>>;
  let clients: OpenAI[];
  let providerId: string;

  beforeAll(async () => {
    fake = await FakeProvider.start();
    const adminKey = newApiKey();
    // queued requests wait as long as the enqueues take on a loaded machine: no queue timeout then
    cluster = await startGateways(2, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      QUEUE_TIMEOUT_LOW_MS: '600000',
      QUEUE_TIMEOUT_URGENT_MS: '600000',
    });
    const [a] = cluster.gateways;
    const provider = await adminCall(a!, adminKey, 'POST', '/api/admin/providers', {
      name: 'fake',
      base_url: fake.baseUrl,
      models: fake.models,
      timeout_ms: 600_000, // the held blocker is never an upstream timeout
    });
    expect(provider.status).toBe(201);
    providerId = provider.body.id;
    const key = await adminCall(a!, adminKey, 'POST', `/api/admin/providers/${provider.body.id}/keys`, {
      label: 'only',
      key: 'sk-only',
      max_concurrent: 1,
    });
    expect(key.status).toBe(201);
    clients = cluster.gateways.map(
      (g) => new OpenAI({ apiKey: adminKey, baseURL: `${g.url}/v1`, maxRetries: 0, timeout: 60_000 }),
    );
  });
  afterAll(async () => {
    await cluster?.close();
    await fake?.close();
  });

  it('20 low queued, then 5 urgent: every urgent is dispatched before every low; FIFO within a level', async () => {
    // Warm both instances (credential and provider caches).
    for (const c of clients) await chat(c, 'warm-up', 'normal');
    fake.reset();
    // The blocker holds the only slot, upstream, until the test releases it: everything else
    // queues meanwhile, however long the 25 enqueues take on a loaded machine, so the queue order
    // is known. No answer depends on a delay.
    const gate = FakeProvider.hold();
    fake.when({ reply: (req) => (req.body.messages[0].content === 'blocker' ? { hold: gate } : {}) });
    const dispatcher = cluster.gateways[0]!.app.get(RelayDispatcher);
    const waiting = async () => Object.values(await dispatcher.depth(providerId)).reduce((a, b) => a + b, 0);
    // a state, not a time: the shared queue holds n requests (each enqueued before the next is sent)
    const enqueued = async (n: number) => {
      while ((await waiting()) < n) await sleep(2);
    };
    const calls: Promise<unknown>[] = [chat(clients[0]!, 'blocker', 'normal')];
    await gate.held(1);
    for (let i = 0; i < 20; i++) {
      calls.push(chat(clients[i % 2]!, `low-${i}`, 'low'));
      await enqueued(i + 1);
    }
    for (let i = 0; i < 5; i++) {
      calls.push(chat(clients[i % 2]!, `urgent-${i}`, 'urgent'));
      await enqueued(21 + i);
    }
    gate.release();
    await Promise.all(calls);
    const order = fake.requests.map((r) => r.body.messages[0].content as string);
    expect(order).toEqual([
      'blocker',
      ...Array.from({ length: 5 }, (_, i) => `urgent-${i}`),
      ...Array.from({ length: 20 }, (_, i) => `low-${i}`),
    ]);
    expect(fake.maxInFlight).toBe(1);
    const granted = cluster.gateways.map((g) => g.app.get(RelayDispatcher).granted);
    expect(granted.reduce((a, b) => a + b, 0)).toBe(25);
  });
});

describe('queue bound, wait timeouts, upstream timeouts and client aborts (embedded)', () => {
  let fx: RelayFixture;
  beforeAll(async () => {
    fx = await startRelay('embedded', {
      env: { QUEUE_MAX_PER_PROVIDER: '2', QUEUE_TIMEOUT_LOW_MS: '300' },
      provider: { timeout_ms: 1000 },
      keys: [{ key: 'sk-one', max_concurrent: 1 }],
    });
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('queue full → 503 queue_full_error with Retry-After (reject policy)', async () => {
    fx.fake.reset();
    fx.fake.when({ reply: { delayMs: 900 } }); // under the provider's 1000 ms timeout
    const running = [chat(fx.client, 'a', 'normal')];
    while (fx.fake.inFlight < 1) await sleep(5);
    running.push(chat(fx.client, 'b', 'normal'), chat(fx.client, 'c', 'normal'));
    await waitForDepth(fx, 2);
    const err = (await chat(fx.client, 'd', 'normal').catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err.status).toBe(503);
    expect((err.error as { type: string }).type).toBe('queue_full_error');
    expect(Number(err.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await Promise.all(running);
  });

  it('a low request waiting longer than its timeout → 429 with Retry-After, and its job is gone', async () => {
    fx.fake.reset();
    fx.fake.when({ reply: { delayMs: 900 } });
    const blocker = chat(fx.client, 'blocker', 'normal');
    while (fx.fake.inFlight < 1) await sleep(5);
    const err = (await chat(fx.client, 'late', 'low').catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err.error as { code: string }).code).toBe('queue_timeout');
    expect(Number(err.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await blocker;
    const depth = await fx.gw.app.get(RelayDispatcher).depth(fx.providerId);
    expect(Object.values(depth).reduce((a, b) => a + b, 0)).toBe(0);
    expect(fx.fake.requests.map((r) => r.body.messages[0].content)).toEqual(['blocker']);
  });

  it('upstream slower than timeout_ms → 504 upstream_timeout_error', async () => {
    fx.fake.reset();
    fx.fake.when({ reply: { delayMs: 2500 } });
    const err = (await chat(fx.client, 'slow', 'normal').catch((e: unknown) => e)) as APIError;
    expect(err.status).toBe(504);
    expect((err.error as { type: string }).type).toBe('upstream_timeout_error');
  });

  it('client aborts mid-stream: the upstream connection closes within 1 s and the key has nothing in flight', async () => {
    fx.fake.reset();
    fx.fake.when({
      reply: { chunkDelayMs: 200, text: 'one two three four five six seven eight nine ten eleven twelve' },
    });
    const controller = new AbortController();
    const res = await fetch(`${fx.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(fx.adminKey),
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'x' }],
        stream: true,
      }),
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    const abortedAt = Date.now();
    controller.abort();
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && !fx.fake.requests[0]?.closedEarly) await sleep(20);
    const seen = fx.fake.requests[0]!;
    expect(seen.closedEarly).toBe(true);
    expect(seen.endedAt! - abortedAt).toBeLessThan(1000);
    const pool = fx.gw.app.get(KeyPoolService);
    let inFlight = -1;
    while (Date.now() < deadline) {
      inFlight = (await pool.windows(fx.providerId, [fx.keyIds['sk-one']!]))[0]!.inFlight;
      if (inFlight === 0) break;
      await sleep(20);
    }
    expect(inFlight).toBe(0);
  });
});

describe('queue full under QUEUE_FULL_POLICY=passthrough (distributed)', () => {
  let fx: RelayFixture;
  beforeAll(async () => {
    fx = await startRelay('distributed', {
      env: { QUEUE_MAX_PER_PROVIDER: '1', QUEUE_FULL_POLICY: 'passthrough' },
      keys: [{ key: 'sk-one', max_concurrent: 1 }],
    });
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('requests beyond the bound are still served once capacity frees', async () => {
    fx.fake.when({ reply: { delayMs: 100 } });
    const results = await Promise.all(['a', 'b', 'c', 'd'].map((t) => chat(fx.client, t, 'normal')));
    expect(results.every((r) => r.choices[0]!.message.content === fx.fake.text)).toBe(true);
    expect(fx.fake.maxInFlight).toBe(1);
    expect(fx.fake.requests).toHaveLength(4);
  });
});
