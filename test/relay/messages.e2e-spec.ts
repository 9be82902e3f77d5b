import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RequestLogWriter } from '../../src/relay/infrastructure/request-log.writer.js';
import { newApiKey } from '../support/auth.js';
import { pollUntil } from '../support/cluster.js';
import { FakeAnthropic } from '../support/fake-anthropic.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, MODES, startGateway, type TestGateway } from '../support/gateway.js';
import { adminCall } from '../support/relay.js';

/**
 * Issue 17 items 2 and 3: anthropic-kind providers and POST /v1/messages, passed through natively.
 * Requests are sent exactly as the Anthropic SDK sends them (x-api-key with a Floodgate key,
 * anthropic-version, content-type; no Authorization) to a gateway in front of a fake Anthropic
 * provider (a real HTTP server speaking the Messages API) and a fake OpenAI-compatible one.
 */

const PRICE = { input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3 };
const USAGE = {
  input_tokens: 100,
  cache_read_input_tokens: 1000,
  cache_creation_input_tokens: 200,
  output_tokens: 6,
};
// prompt = 100 + 1000 + 200 = 1300, cached = 1000: (300 × 3 + 1000 × 0.3 + 6 × 15) µ$
const COST_MICRO_USD = 300 * 3 + 1000 * 0.3 + 6 * 15;

describe.each(MODES)('POST /v1/messages on anthropic providers (%s)', (mode) => {
  let gw: TestGateway;
  let anthropic: FakeAnthropic;
  let openai: FakeProvider;
  let adminKey: string;
  let providerId: string;
  let openaiProviderId: string;
  const keyIds: Record<string, string> = {};

  const sdkHeaders = (extra: Record<string, string> = {}) => ({
    'x-api-key': adminKey,
    'anthropic-version': '2023-06-01',
    'content-type': 'application/json',
    ...extra,
  });
  const body = (over: Record<string, unknown> = {}) => ({
    model: 'claude-sonnet-4-5',
    max_tokens: 64,
    messages: [{ role: 'user', content: 'Say hello' }],
    ...over,
  });
  const messages = (payload: unknown, headers: Record<string, string> = sdkHeaders()) =>
    getJson(`${gw.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify(payload) });
  const admin = (method: string, path: string, payload?: unknown) =>
    adminCall(gw, adminKey, method, path, payload);

  const logged = async (requestId: string) => {
    const db = gw.app.get(DataSource);
    const { value } = await pollUntil(
      async () => {
        await gw.app.get(RequestLogWriter).flush();
        const rows = (await db.query(
          'SELECT status, prompt_tokens, completion_tokens, cost_micro_usd, attempts, endpoint FROM request_log WHERE request_id = $1',
          [requestId],
        )) as {
          status: number;
          prompt_tokens: number;
          completion_tokens: number;
          cost_micro_usd: string | null;
          attempts: number;
          endpoint: string;
        }[];
        return rows[0];
      },
      { timeoutMs: 10_000, what: 'the request in the request log' },
    );
    return value;
  };

  beforeAll(async () => {
    anthropic = await FakeAnthropic.start({ keys: ['sk-ant-1', 'sk-ant-2'] });
    openai = await FakeProvider.start();
    adminKey = newApiKey();
    gw = await startGateway(mode, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_IP_RPM: '1000000',
    });
    const created = await admin('POST', '/api/admin/providers', {
      name: 'claude',
      kind: 'anthropic',
      base_url: anthropic.baseUrl,
      models: ['claude-*'],
      timeout_ms: 5000,
      pricing: { 'claude-*': PRICE },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    providerId = created.body.id;
    for (const key of ['sk-ant-1', 'sk-ant-2']) {
      const k = await admin('POST', `/api/admin/providers/${providerId}/keys`, { label: key, key });
      expect(k.status).toBe(201);
      keyIds[key] = k.body.id;
    }
    const other = await admin('POST', '/api/admin/providers', {
      name: 'openai',
      base_url: openai.baseUrl,
      models: ['gpt-4o-mini'],
      timeout_ms: 5000,
    });
    expect(other.status).toBe(201);
    openaiProviderId = other.body.id;
    expect(
      (await admin('POST', `/api/admin/providers/${openaiProviderId}/keys`, { label: 'o', key: 'sk-o' }))
        .status,
    ).toBe(201);
  });
  afterAll(async () => {
    await gw?.close();
    await anthropic?.close();
    await openai?.close();
  });
  beforeEach(() => {
    anthropic.reset();
    openai.reset();
  });

  it('providers carry kind: created, shown, patched and audited; a bad kind is a 400 naming kind', async () => {
    expect((await admin('GET', `/api/admin/providers/${providerId}`)).body.kind).toBe('anthropic');
    const list = (await admin('GET', '/api/admin/providers')).body as { id: string; kind: string }[];
    expect(list.find((p) => p.id === openaiProviderId)?.kind).toBe('openai');

    const bad = await admin('POST', '/api/admin/providers', {
      name: 'gem',
      kind: 'gemini',
      base_url: openai.baseUrl,
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ type: 'invalid_request_error', param: 'kind' });
    expect(bad.body.error.message).toMatch(/kind must be one of openai, anthropic/);
    const badPatch = await admin('PATCH', `/api/admin/providers/${providerId}`, { kind: 'x' });
    expect(badPatch.status).toBe(400);
    expect(badPatch.body.error.param).toBe('kind');

    const spare = await admin('POST', '/api/admin/providers', {
      name: `spare-${randomUUID().slice(0, 8)}`,
      base_url: openai.baseUrl,
      enabled: false,
    });
    expect(spare.body.kind).toBe('openai');
    const patched = await admin('PATCH', `/api/admin/providers/${spare.body.id}`, { kind: 'anthropic' });
    expect(patched.status).toBe(200);
    expect(patched.body.kind).toBe('anthropic');
    const audit = (await admin('GET', '/api/admin/audit?action=provider.update')).body.data as {
      target_id: string;
      changes: Record<string, unknown>;
    }[];
    expect(audit.find((e) => e.target_id === spare.body.id)?.changes.kind).toEqual({
      from: 'openai',
      to: 'anthropic',
    });
    const createdAudit = (await admin('GET', '/api/admin/audit?action=provider.create')).body.data as {
      target_id: string;
      changes: Record<string, unknown>;
    }[];
    expect(createdAudit.find((e) => e.target_id === providerId)?.changes.kind).toBe('anthropic');
  });

  it('JSON: the answer comes back unchanged; usage and cost logged; the upstream got x-api-key, never authorization', async () => {
    anthropic.when({ reply: { text: 'Hello from Claude', usage: USAGE } });
    const requestId = randomUUID();
    const res = await messages(body({ metadata: { user_id: 'u-1' }, temperature: 0.5 }), {
      ...sdkHeaders({ 'anthropic-beta': 'prompt-caching-2024-07-31' }),
      'x-request-id': requestId,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^msg_fake/),
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [{ type: 'text', text: 'Hello from Claude' }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { ...USAGE },
    });

    expect(anthropic.requests).toHaveLength(1);
    const up = anthropic.requests[0]!;
    expect(up.path).toBe('/v1/messages');
    expect(['sk-ant-1', 'sk-ant-2']).toContain(up.key);
    expect(up.headers['x-api-key']).toBe(up.key);
    expect(res.headers.get('x-floodgate-provider-key')).toBe(keyIds[up.key!]);
    expect(up.headers.authorization).toBeUndefined();
    expect(up.headers['anthropic-version']).toBe('2023-06-01');
    expect(up.headers['anthropic-beta']).toBe('prompt-caching-2024-07-31');
    // the body as the client sent it
    expect(up.body).toEqual(body({ metadata: { user_id: 'u-1' }, temperature: 0.5 }));
    expect(JSON.stringify(up.headers)).not.toContain(adminKey);

    const row = await logged(requestId);
    expect(row).toMatchObject({ status: 200, prompt_tokens: 1300, completion_tokens: 6, attempts: 1 });
    expect(Number(row.cost_micro_usd)).toBe(COST_MICRO_USD);
  });

  it('stream: events pass through unchanged (event: lines included); usage from message_start + message_delta', async () => {
    anthropic.when({ reply: { text: 'one two three ', usage: USAGE } });
    const requestId = randomUUID();
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: { ...sdkHeaders({ 'anthropic-version': '2024-10-22' }), 'x-request-id': requestId },
      body: JSON.stringify(body({ stream: true })),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text();
    const events = text.split('\n\n').filter((e) => e !== '');
    expect(events.map((e) => e.split('\n')[0])).toEqual([
      'event: message_start',
      'event: content_block_start',
      'event: ping',
      'event: content_block_delta',
      'event: content_block_delta',
      'event: content_block_delta',
      'event: content_block_stop',
      'event: message_delta',
      'event: message_stop',
    ]);
    const start = JSON.parse(events[0]!.split('\n')[1]!.slice(6));
    expect(start.message.model).toBe('claude-sonnet-4-5');
    expect(start.message.usage.cache_read_input_tokens).toBe(1000);
    expect(anthropic.requests[0]!.headers['anthropic-version']).toBe('2024-10-22');
    expect(anthropic.requests[0]!.headers.authorization).toBeUndefined();

    const row = await logged(requestId);
    expect(row).toMatchObject({ status: 200, prompt_tokens: 1300, completion_tokens: 6 });
    expect(Number(row.cost_micro_usd)).toBe(COST_MICRO_USD);
  });

  it('a stream cut upstream ends with an Anthropic error event after what was delivered', async () => {
    anthropic.when({ times: 1, reply: { text: 'one two three ', cutAfterEvents: 4 } });
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: sdkHeaders(),
      body: JSON.stringify(body({ stream: true })),
    });
    expect(res.status).toBe(200);
    const events = (await res.text()).split('\n\n').filter((e) => e !== '');
    expect(events.slice(0, 4).map((e) => e.split('\n')[0])).toEqual([
      'event: message_start',
      'event: content_block_start',
      'event: ping',
      'event: content_block_delta',
    ]);
    expect(events).toHaveLength(5);
    const [name, data] = events[4]!.split('\n');
    expect(name).toBe('event: error');
    expect(JSON.parse(data!.slice(6))).toMatchObject({
      type: 'error',
      error: { type: 'upstream_error', code: 'upstream_stream_interrupted' },
    });
  });

  it('a tool_use answer passes through unchanged', async () => {
    const res = await messages(
      body({ tools: [{ name: 'lookup', description: 'd', input_schema: { type: 'object' } }] }),
    );
    expect(res.status).toBe(200);
    expect(res.body.stop_reason).toBe('tool_use');
    expect(res.body.content[1]).toMatchObject({ type: 'tool_use', name: 'lookup', input: { q: 'fake' } });
  });

  it('client errors come in the Anthropic-compatible shape: {"type":"error","error":{…}}', async () => {
    // our validation
    const invalid = await messages({
      model: 'claude-sonnet-4-5',
      messages: [{ role: 'user', content: 'x' }],
    });
    expect(invalid.status).toBe(400);
    expect(invalid.body).toEqual({
      type: 'error',
      error: {
        type: 'invalid_request_error',
        code: 'validation_failed',
        message: 'max_tokens must be a positive integer',
        param: 'max_tokens',
        request_id: expect.any(String),
      },
    });
    // no credential (the SDK without a key) → 401, same shape
    const anonymous = await messages(body(), {
      'anthropic-version': '2023-06-01',
      'content-type': 'application/json',
    });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    // an unknown model → 404
    const unknown = await messages(body({ model: 'nope-1' }));
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ type: 'error', error: { code: 'model_not_found', param: 'model' } });
    // the upstream's own 4xx keeps Anthropic's words (its error type as code), not retried
    anthropic.when({ times: 1, reply: FakeAnthropic.invalidRequest('messages: roles must alternate') });
    const upstream = await messages(body());
    expect(upstream.status).toBe(400);
    expect(upstream.body).toMatchObject({
      type: 'error',
      error: {
        type: 'invalid_request_error',
        code: 'invalid_request_error',
        message: 'messages: roles must alternate',
      },
    });
    expect(anthropic.requests).toHaveLength(1);
    // a body that is not JSON
    const broken = await fetch(`${gw.url}/v1/messages`, { method: 'POST', headers: sdkHeaders(), body: '{' });
    expect(broken.status).toBe(400);
    expect(await broken.json()).toMatchObject({ type: 'error', error: { code: 'invalid_json' } });
    // other routes keep the one error shape without the extra field
    const chat = await getJson(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: sdkHeaders(),
      body: JSON.stringify({ model: 'gpt-4o-mini' }),
    });
    expect(chat.status).toBe(400);
    expect(chat.body.type).toBeUndefined();
  });

  // (/v1/messages on an openai-kind provider is translated to chat/completions: translate-messages.e2e-spec.ts)
  it('embeddings on an anthropic provider → 400 endpoint_not_supported', async () => {
    const embeddings = await getJson(`${gw.url}/v1/embeddings`, {
      method: 'POST',
      headers: sdkHeaders(),
      body: JSON.stringify({ model: 'claude-sonnet-4-5', input: 'x' }),
    });
    expect(embeddings.status).toBe(400);
    expect(embeddings.body.error).toMatchObject({ code: 'endpoint_not_supported', param: 'model' });
    expect(embeddings.body.type).toBeUndefined();
    expect(anthropic.requests).toHaveLength(0);
  });

  it('a route with targets of both kinds on /v1/messages: the anthropic tier answers natively', async () => {
    const alias = `mixed-${randomUUID().slice(0, 8)}`;
    const route = await admin('POST', '/api/admin/routes', {
      model: alias,
      targets: [
        { provider_id: providerId, model: 'claude-haiku-4-5', tier: 1 },
        { provider_id: openaiProviderId, model: 'gpt-4o-mini', tier: 2 },
      ],
      max_attempts: 2,
    });
    expect(route.status, JSON.stringify(route.body)).toBe(201);
    const res = await messages(body({ model: alias }));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.model).toBe(alias);
    expect(res.headers.get('x-floodgate-route-target')).toBe('claude/claude-haiku-4-5');
    expect(openai.requests).toHaveLength(0);
    expect(anthropic.requests.map((r) => r.body.model)).toEqual(['claude-haiku-4-5']);
    // streamed: message_start shows the alias
    const streamed = await (
      await fetch(`${gw.url}/v1/messages`, {
        method: 'POST',
        headers: sdkHeaders(),
        body: JSON.stringify(body({ model: alias, stream: true })),
      })
    ).text();
    expect(JSON.parse(streamed.split('\n\n')[0]!.split('\n')[1]!.slice(6)).message.model).toBe(alias);
  });

  it('529 overloaded_error: retried on another key; both overloaded → 502 upstream_error; counted as pushback by the retreat window', async () => {
    anthropic.when({ times: 1, reply: FakeAnthropic.overloaded() });
    const requestId = randomUUID();
    const res = await messages(body(), { ...sdkHeaders(), 'x-request-id': requestId });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(anthropic.requests).toHaveLength(2);
    expect(anthropic.requests[0]!.status).toBe(529);
    expect(anthropic.requests[1]!.key).not.toBe(anthropic.requests[0]!.key);
    expect((await logged(requestId)).attempts).toBe(2);

    anthropic.reset();
    anthropic.when({ times: 2, reply: FakeAnthropic.overloaded() });
    const failed = await messages(body());
    expect(failed.status).toBe(502);
    expect(failed.headers.get('x-should-retry')).toBe('true');
    expect(failed.body).toMatchObject({
      type: 'error',
      error: { type: 'upstream_error', code: 'upstream_error', message: 'Provider claude answered 529' },
    });
    // an overload neither cools a key down nor invalidates it
    const keys = (await admin('GET', `/api/admin/providers/${providerId}/keys`)).body as { state: string }[];
    expect(keys.map((k) => k.state)).toEqual(['active', 'active']);
    // …but the provider's retreat window counts it as pushback (like a rate 429)
    const { value: rate } = await pollUntil(
      async () => {
        const status = await admin('GET', '/api/admin/status');
        const p = (status.body.providers as { id: string; retreat: { upstream_429_rate: number } }[]).find(
          (x) => x.id === providerId,
        );
        return p && p.retreat.upstream_429_rate > 0 ? p.retreat.upstream_429_rate : undefined;
      },
      { timeoutMs: 5000, what: 'the 529s in the retreat window' },
    );
    expect(rate).toBeGreaterThan(0);
  });

  it('429 rate_limit_error: the key cools down (admin API shows it) and the request is retried on the other key', async () => {
    anthropic.when({ times: 1, reply: FakeAnthropic.rateLimited(30) });
    const requestId = randomUUID();
    const res = await messages(body(), { ...sdkHeaders(), 'x-request-id': requestId });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(anthropic.requests).toHaveLength(2);
    const limited = anthropic.requests[0]!.key!;
    expect(anthropic.requests[0]!.status).toBe(429);
    expect(anthropic.requests[1]!.key).not.toBe(limited);
    expect(res.headers.get('x-floodgate-provider-key')).toBe(keyIds[anthropic.requests[1]!.key!]);
    // the upstream's anthropic-ratelimit-* headers stay in the gateway
    expect([...res.headers.keys()].filter((h) => h.startsWith('anthropic-ratelimit-'))).toEqual([]);

    const key = (await admin('GET', `/api/admin/providers/${providerId}/keys`)).body.find(
      (k: { id: string }) => k.id === keyIds[limited],
    );
    expect(key.state).toBe('cooling');
    expect(Date.parse(key.cooldown_until) - Date.now()).toBeGreaterThan(20_000);
    expect(key.last_429_at).not.toBeNull();
    expect((await logged(requestId)).attempts).toBe(2);

    // the other key limited too: a 429 in the Anthropic-compatible shape, with Retry-After
    anthropic.when({ times: 1, reply: FakeAnthropic.rateLimited(20) });
    const refused = await messages(body());
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).not.toBeNull();
    expect(refused.body).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
  });
});
