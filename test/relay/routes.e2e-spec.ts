import OpenAI from 'openai';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FloodgateMetrics } from '../../src/metrics/floodgate-metrics.js';
import { RequestLogWriter } from '../../src/relay/infrastructure/request-log.writer.js';
import { createUserWithKey } from '../support/auth.js';
import { dropUpstreamConnections, openStream, readSse } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { MODES } from '../support/gateway.js';
import { adminCall } from '../support/relay.js';
import { chatVia, startRoutes, type RoutesFixture } from './routes-fixture.js';

const TARGET = 'x-floodgate-route-target';

/**
 * Routes (issue 15), relay side: a route alias sends to its targets by tier and weight, falls back
 * on capacity and on retryable failures, shows the alias as `model` and the target in a header.
 * Routes are created through POST /api/admin/routes; the upstreams are real HTTP servers.
 */
describe.each(MODES)('routes: choosing a target and falling back (%s mode)', (mode) => {
  let fx: RoutesFixture;
  beforeAll(async () => {
    fx = await startRoutes(mode);
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('tier 1 answers 500, tier 2 is healthy: every request is answered 200 by tier 2, which receives its own model', async () => {
    const a = await fx.addUpstream('fail500a');
    const b = await fx.addUpstream('okb');
    a.fake.when({ reply: FakeProvider.serverError(500) });
    await fx.createRoute({
      model: 'fallback-500',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1 },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    for (let i = 0; i < 5; i++) {
      const r = await chatVia(fx.gw.url, fx.adminKey, 'fallback-500');
      expect(r.status).toBe(200);
      expect(r.headers.get(TARGET)).toBe(`okb/${b.model}`);
      expect(r.body.model).toBe('fallback-500');
    }
    expect(b.fake.requests).toHaveLength(5);
    expect(b.fake.requests.every((q) => q.body.model === b.model)).toBe(true);
    // without a breaker (or before it opens), each request tried tier 1 first
    expect(a.fake.requests.length).toBeGreaterThanOrEqual(1);
    expect(a.fake.requests.every((q) => q.body.model === a.model)).toBe(true);
    // metrics: the fallbacks by route and reason; the relay's model label is the alias
    const text = await fx.gw.app.get(FloodgateMetrics).render();
    expect(text).toContain(
      `floodgate_route_fallbacks_total{route="fallback-500",reason="upstream_error"} ${a.fake.requests.length}`,
    );
    expect(text).toMatch(
      /floodgate_relay_requests_total\{provider="okb",model="fallback-500",priority="normal",outcome="ok"\} 5/,
    );
  });

  it('tier 1 saturated (max_concurrent 2, slow upstream), tier 2 free: the overflow goes to tier 2 at once, tier 1 runs at its limit', async () => {
    const a = await fx.addUpstream('sata', [{ max_concurrent: 2 }]);
    const b = await fx.addUpstream('satb');
    a.fake.when({ reply: { delayMs: 1200 } });
    b.fake.when({ reply: { delayMs: 1200 } });
    await fx.createRoute({
      model: 'overflow',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1 },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    const started = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => chatVia(fx.gw.url, fx.adminKey, 'overflow')),
    );
    const elapsed = Date.now() - started;
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    const byTarget = answers.map((r) => r.headers.get(TARGET));
    expect(byTarget.filter((t) => t === `sata/${a.model}`)).toHaveLength(2);
    expect(byTarget.filter((t) => t === `satb/${b.model}`)).toHaveLength(4);
    // no queue wait: every request admitted at once, all served in one upstream round
    expect(answers.every((r) => r.headers.get('x-floodgate-queue-ms') === '0')).toBe(true);
    expect(elapsed).toBeLessThan(2300);
    expect(a.fake.maxInFlight).toBe(2);
    expect(a.fake.requests).toHaveLength(2);
  });

  it('weights 3:1 between two targets with headroom → 75 % / 25 % ± 5 % over 2,000 requests', async () => {
    // Headroom on both (a fixed limit well above the 16 clients): the weights alone decide. With
    // adaptive keys (learned limit starting at 8) a loaded machine overflows the 3-share target.
    const a = await fx.addUpstream('wa', [{ max_concurrent: 64 }]);
    const b = await fx.addUpstream('wb', [{ max_concurrent: 64 }]);
    await fx.createRoute({
      model: 'weighted',
      targets: [
        { provider_id: a.providerId, model: a.model, weight: 3, tier: 1 },
        { provider_id: b.providerId, model: b.model, weight: 1, tier: 1 },
      ],
    });
    const total = 2000;
    let next = 0;
    const counts: Record<string, number> = {};
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < total) {
          next++;
          const r = await chatVia(fx.gw.url, fx.adminKey, 'weighted');
          expect(r.status).toBe(200);
          const t = r.headers.get(TARGET)!;
          counts[t] = (counts[t] ?? 0) + 1;
        }
      }),
    );
    const shareA = (counts[`wa/${a.model}`] ?? 0) / total;
    expect(shareA).toBeGreaterThan(0.7);
    expect(shareA).toBeLessThan(0.8);
    expect(a.fake.requests.length + b.fake.requests.length).toBe(total);
  }, 120_000);

  it('a 400 from the upstream is passed on, never retried on another target', async () => {
    const a = await fx.addUpstream('bad400a');
    const b = await fx.addUpstream('bad400b');
    a.fake.when({
      reply: {
        status: 400,
        body: { error: { message: 'bad field', type: 'invalid_request_error', code: null } },
      },
    });
    await fx.createRoute({
      model: 'client-error',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1 },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    const r = await chatVia(fx.gw.url, fx.adminKey, 'client-error');
    expect(r.status).toBe(400);
    expect(r.headers.get(TARGET)).toBe(`bad400a/${a.model}`);
    expect(a.fake.requests).toHaveLength(1);
    expect(b.fake.requests).toHaveLength(0);
  });

  it('a stream that failed after its first byte is not retried elsewhere', async () => {
    const a = await fx.addUpstream('cuta');
    const b = await fx.addUpstream('cutb');
    a.fake.when({
      reply: { chunkDelayMs: 100, text: Array.from({ length: 30 }, (_, i) => `w${i}`).join(' ') },
    });
    await fx.createRoute({
      model: 'cut-stream',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1 },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    const res = await openStream(fx.gw.url, fx.adminKey, 'cut', { model: 'cut-stream' });
    expect(res.status).toBe(200);
    expect(res.headers.get(TARGET)).toBe(`cuta/${a.model}`);
    let dropped = 0;
    const sse = await readSse(res, (events) => {
      const deltas = events.filter((e) => (e as any)?.choices?.[0]?.delta?.content);
      if (deltas.length === 2 && dropped === 0) dropped = dropUpstreamConnections(a.fake);
      return false;
    });
    expect(dropped).toBeGreaterThan(0);
    expect(sse.error).toMatchObject({ code: 'upstream_stream_interrupted' });
    expect(sse.events.filter((e) => (e as any)?.model).every((e) => (e as any).model === 'cut-stream')).toBe(
      true,
    );
    expect(b.fake.requests).toHaveLength(0);
  });

  it('max_attempts bounds the attempts: three failing targets, max_attempts 2 → two upstream requests, then 502', async () => {
    const ups = [await fx.addUpstream('ma1'), await fx.addUpstream('ma2'), await fx.addUpstream('ma3')];
    for (const u of ups) u.fake.when({ reply: FakeProvider.serverError(503) });
    await fx.createRoute({
      model: 'bounded',
      max_attempts: 2,
      targets: ups.map((u, i) => ({ provider_id: u.providerId, model: u.model, tier: i + 1 })),
    });
    const r = await chatVia(fx.gw.url, fx.adminKey, 'bounded');
    expect(r.status).toBe(502);
    expect(r.body.error.code).toBe('upstream_error');
    expect(r.headers.get(TARGET)).toBe(`ma2/${ups[1]!.model}`);
    expect(ups.map((u) => u.fake.requests.length)).toEqual([1, 1, 0]);
  });

  it('a 429 moves to the next target; a connection error too', async () => {
    const a = await fx.addUpstream('rl429a');
    const c = await fx.addUpstream('connc');
    const b = await fx.addUpstream('rl429b');
    a.fake.when({ times: 1, reply: FakeProvider.rateLimited(30) });
    c.fake.when({ reply: { destroy: true } });
    const route = await fx.createRoute({
      model: 'after-429',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1 },
        { provider_id: c.providerId, model: c.model, tier: 2 },
        { provider_id: b.providerId, model: b.model, tier: 3 },
      ],
    });
    const r = await chatVia(fx.gw.url, fx.adminKey, 'after-429');
    expect(r.status).toBe(200);
    expect(r.headers.get(TARGET)).toBe(`rl429b/${b.model}`);
    expect([a.fake.requests.length, c.fake.requests.length, b.fake.requests.length]).toEqual([1, 1, 1]);
    // the request log has the route and every attempt: number, target, outcome
    const row = await logRow(fx, r.headers.get('x-request-id')!);
    expect(row.route_id).toBe(route.id);
    expect(row.attempts).toBe(3);
    expect(row.provider_id).toBe(b.providerId);
    expect(row.attempt_log).toMatchObject([
      { attempt: 1, provider_id: a.providerId, model: a.model, status: 429, outcome: 'rate_limited' },
      { attempt: 2, provider_id: c.providerId, model: c.model, status: null, outcome: 'connect_error' },
      { attempt: 3, provider_id: b.providerId, model: b.model, status: 200, outcome: 'ok' },
    ]);
    expect(row.attempt_log.every((x: { key_id: string }) => typeof x.key_id === 'string')).toBe(true);
  });

  it('a target that does not answer within its own first_byte_ms moves to the next target (timeout before the first byte)', async () => {
    const a = await fx.addUpstream('slowa');
    const b = await fx.addUpstream('fastb');
    a.fake.when({ reply: { delayMs: 3000 } });
    await fx.createRoute({
      model: 'slow-first',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1, timeouts: { first_byte_ms: 300 } },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    const started = Date.now();
    const r = await chatVia(fx.gw.url, fx.adminKey, 'slow-first');
    expect(r.status).toBe(200);
    expect(r.headers.get(TARGET)).toBe(`fastb/${b.model}`);
    expect(Date.now() - started).toBeLessThan(2000); // the provider's timeout_ms is 10 s
    const row = await logRow(fx, r.headers.get('x-request-id')!);
    expect(row.attempt_log).toMatchObject([
      { attempt: 1, provider_id: a.providerId, outcome: 'timeout', status: null },
      { attempt: 2, provider_id: b.providerId, outcome: 'ok', status: 200 },
    ]);
  });

  it('all targets full → the request waits and is served by whichever frees first', async () => {
    const a = await fx.addUpstream('fulla', [{ max_concurrent: 1 }]);
    const b = await fx.addUpstream('fullb', [{ max_concurrent: 1 }]);
    a.fake.when({ times: 1, reply: { delayMs: 2500 } });
    b.fake.when({ times: 1, reply: { delayMs: 600 } });
    await fx.createRoute({
      model: 'all-full',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1 },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    const first = chatVia(fx.gw.url, fx.adminKey, 'all-full');
    await waitFor(() => a.fake.inFlight === 1);
    const second = chatVia(fx.gw.url, fx.adminKey, 'all-full');
    await waitFor(() => b.fake.inFlight === 1);
    const third = await chatVia(fx.gw.url, fx.adminKey, 'all-full');
    expect(third.status).toBe(200);
    expect(third.headers.get(TARGET)).toBe(`fullb/${b.model}`);
    expect(Number(third.headers.get('x-floodgate-queue-ms'))).toBeGreaterThan(200);
    expect(a.fake.inFlight).toBe(1); // tier 1 still busy: the waiter did not wait for it
    expect((await first).headers.get(TARGET)).toBe(`fulla/${a.model}`);
    expect((await second).headers.get(TARGET)).toBe(`fullb/${b.model}`);
    expect(a.fake.requests).toHaveLength(1);
    expect(b.fake.requests).toHaveLength(2);
  });

  it('many waiters across two full targets: all served, every grant used or given back (no slot leaks)', async () => {
    const a = await fx.addUpstream('storma', [{ max_concurrent: 1 }]);
    const b = await fx.addUpstream('stormb', [{ max_concurrent: 1 }]);
    a.fake.when({ reply: { delayMs: 150 } });
    b.fake.when({ reply: { delayMs: 150 } });
    await fx.createRoute({
      model: 'storm',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1 },
        { provider_id: b.providerId, model: b.model, tier: 1 },
      ],
    });
    const answers = await Promise.all(
      Array.from({ length: 12 }, () => chatVia(fx.gw.url, fx.adminKey, 'storm')),
    );
    expect(answers.map((r) => r.status)).toEqual(Array(12).fill(200));
    expect(a.fake.maxInFlight).toBe(1);
    expect(b.fake.maxInFlight).toBe(1);
    expect(a.fake.requests.length + b.fake.requests.length).toBe(12);
    // Both slots are free again: two requests at once are both admitted at once, one on each target
    // (a grant kept by a withdrawn wait would hold a slot until its lease expired).
    await new Promise((r) => setTimeout(r, 2500)); // late grants of withdrawn waits are given back within LATE_GRANT_MS
    const after = await Promise.all([
      chatVia(fx.gw.url, fx.adminKey, 'storm'),
      chatVia(fx.gw.url, fx.adminKey, 'storm'),
    ]);
    expect(after.map((r) => r.headers.get('x-floodgate-queue-ms'))).toEqual(['0', '0']);
    expect(new Set(after.map((r) => r.headers.get(TARGET))).size).toBe(2);
  });

  it('the openai SDK against the alias sees the alias as model, stream and non-stream', async () => {
    const a = await fx.addUpstream('sdka');
    await fx.createRoute({ model: 'chat-default', targets: [{ provider_id: a.providerId, model: a.model }] });
    const client = new OpenAI({ apiKey: fx.adminKey, baseURL: `${fx.gw.url}/v1`, maxRetries: 0 });
    const { data, response } = await client.chat.completions
      .create({ model: 'chat-default', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    expect(data.model).toBe('chat-default');
    expect(data.choices[0]!.message.content).toBe(a.fake.text);
    expect(response.headers.get(TARGET)).toBe(`sdka/${a.model}`);
    const stream = await client.chat.completions.create({
      model: 'chat-default',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const models = new Set<string>();
    let text = '';
    let usage = 0;
    for await (const chunk of stream) {
      models.add(chunk.model);
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage.total_tokens;
    }
    expect([...models]).toEqual(['chat-default']);
    expect(text).toBe(a.fake.text);
    expect(usage).toBeGreaterThan(0);
    expect(a.fake.requests.map((q) => q.body.model)).toEqual([a.model, a.model]);
    // the models listing has the alias, and retrieving it works
    const listed = await client.models.list();
    expect(listed.data.find((m) => m.id === 'chat-default')).toMatchObject({ owned_by: 'floodgate' });
    expect(await client.models.retrieve('chat-default')).toMatchObject({
      id: 'chat-default',
      object: 'model',
    });
  });

  it('allowed_models applies to the alias the client sends, not to the target model', async () => {
    const a = await fx.addUpstream('allowa');
    await fx.createRoute({
      model: 'allowed-alias',
      targets: [{ provider_id: a.providerId, model: a.model }],
    });
    const aliasOnly = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
      key: { allowed_models: ['allowed-alias'] },
    });
    const targetOnly = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
      key: { allowed_models: [a.model] },
    });
    expect((await chatVia(fx.gw.url, aliasOnly.key, 'allowed-alias')).status).toBe(200);
    const refused = await chatVia(fx.gw.url, targetOnly.key, 'allowed-alias');
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('model_not_allowed');
    const listed = await adminCall(fx.gw, aliasOnly.key, 'GET', '/v1/models');
    expect(listed.body.data.map((m: { id: string }) => m.id)).toEqual(['allowed-alias']);
  });

  it('without a route nothing changes: served as before, no route header, no attempt_log for a single attempt; a retry logs both', async () => {
    const a = await fx.addUpstream('plain', [{}, {}]);
    const r = await chatVia(fx.gw.url, fx.adminKey, a.model);
    expect(r.status).toBe(200);
    expect(r.headers.get(TARGET)).toBeNull();
    expect(r.body.model).toBe(a.model);
    const row = await logRow(fx, r.headers.get('x-request-id')!);
    expect(row.route_id).toBeNull();
    expect(row.attempt_log).toBeNull();
    expect(row.attempts).toBe(1);
    // one 500, then the retry on the other key: both attempts logged
    a.fake.when({ times: 1, reply: FakeProvider.serverError(500) });
    const retried = await chatVia(fx.gw.url, fx.adminKey, a.model);
    expect(retried.status).toBe(200);
    const row2 = await logRow(fx, retried.headers.get('x-request-id')!);
    expect(row2.attempts).toBe(2);
    expect(row2.attempt_log).toMatchObject([
      { attempt: 1, provider_id: a.providerId, model: a.model, status: 500, outcome: 'upstream_error' },
      { attempt: 2, provider_id: a.providerId, model: a.model, status: 200, outcome: 'ok' },
    ]);
    expect(row2.attempt_log[0].key_id).not.toBe(row2.attempt_log[1].key_id);
  });

  it('a target on a disabled provider is skipped: the next target serves; embeddings and completions show the alias too', async () => {
    const a = await fx.addUpstream('offa');
    const b = await fx.addUpstream('onb');
    await fx.createRoute({
      model: 'skip-disabled',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1 },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    expect(
      (
        await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/providers/${a.providerId}`, {
          enabled: false,
        })
      ).status,
    ).toBe(200);
    const r = await chatVia(fx.gw.url, fx.adminKey, 'skip-disabled');
    expect(r.status).toBe(200);
    expect(r.headers.get(TARGET)).toBe(`onb/${b.model}`);
    const client = new OpenAI({ apiKey: fx.adminKey, baseURL: `${fx.gw.url}/v1`, maxRetries: 0 });
    const embedding = await client.embeddings.create({ model: 'skip-disabled', input: 'hello' });
    expect(embedding.model).toBe('skip-disabled');
    const completion = await client.completions.create({ model: 'skip-disabled', prompt: 'Say hi' });
    expect(completion.model).toBe('skip-disabled');
    expect(a.fake.requests).toHaveLength(0);
    expect(b.fake.requests.map((q) => q.body.model)).toEqual([b.model, b.model, b.model]);
  });

  it("a stream gets its target's stream_total_ms (cut, not retried); a whole answer its total_ms", async () => {
    const a = await fx.addUpstream('stta');
    const b = await fx.addUpstream('sttb');
    a.fake.when({
      reply: { chunkDelayMs: 100, text: Array.from({ length: 30 }, (_, i) => `w${i}`).join(' ') },
    });
    await fx.createRoute({
      model: 'stream-total',
      targets: [
        {
          provider_id: a.providerId,
          model: a.model,
          tier: 1,
          timeouts: { total_ms: 5000, stream_total_ms: 700 },
        },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    const started = Date.now();
    const res = await openStream(fx.gw.url, fx.adminKey, 'stt', { model: 'stream-total' });
    expect(res.status).toBe(200);
    const sse = await readSse(res);
    expect(Date.now() - started).toBeLessThan(2500); // 30 chunks × 100 ms would take 3 s
    expect(sse.error).toMatchObject({ code: 'upstream_stream_interrupted' });
    expect(b.fake.requests).toHaveLength(0);
    // the same target answers a whole (non-streamed) request within its total_ms (5 s): the stream's 700 ms does not apply
    a.fake.reset();
    a.fake.when({ reply: { delayMs: 1000 } });
    const whole = await chatVia(fx.gw.url, fx.adminKey, 'stream-total');
    expect(whole.status).toBe(200);
    expect(whole.headers.get(TARGET)).toBe(`stta/${a.model}`);
  });

  it('a route whose only target is on a disabled provider → 503 no_route_target', async () => {
    const a = await fx.addUpstream('disa');
    await fx.createRoute({ model: 'dead-route', targets: [{ provider_id: a.providerId, model: a.model }] });
    const off = await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/providers/${a.providerId}`, {
      enabled: false,
    });
    expect(off.status).toBe(200);
    const r = await chatVia(fx.gw.url, fx.adminKey, 'dead-route');
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('no_route_target');
    expect(r.headers.get('retry-after')).toBeTruthy();
    expect(a.fake.requests).toHaveLength(0);
  });
});

describe('routes across two instances (distributed)', () => {
  let fx: RoutesFixture;
  beforeAll(async () => {
    fx = await startRoutes('distributed', { instances: 2 });
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('tier 1 answers 500, tier 2 healthy: every request on either instance is answered 200 by tier 2', async () => {
    const a = await fx.addUpstream('two500a');
    const b = await fx.addUpstream('twob');
    a.fake.when({ reply: FakeProvider.serverError(500) });
    await fx.createRoute({
      model: 'two-instances',
      targets: [
        { provider_id: a.providerId, model: a.model, tier: 1 },
        { provider_id: b.providerId, model: b.model, tier: 2 },
      ],
    });
    for (let i = 0; i < 10; i++) {
      const r = await chatVia(fx.gateways[i % 2]!.url, fx.adminKey, 'two-instances');
      expect(r.status).toBe(200);
      expect(r.headers.get(TARGET)).toBe(`twob/${b.model}`);
      expect(r.body.model).toBe('two-instances');
    }
    expect(b.fake.requests).toHaveLength(10);
  });
});

/** The request's request_log row, once the batched writer has written it. */
async function logRow(fx: RoutesFixture, requestId: string): Promise<any> {
  const db = fx.gw.app.get(DataSource);
  for (let i = 0; i < 100; i++) {
    await fx.gw.app.get(RequestLogWriter).flush();
    const rows = await db.query('SELECT * FROM request_log WHERE request_id = $1', [requestId]);
    if (rows.length > 0) return rows[0];
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no request_log row for ${requestId}`);
}

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
