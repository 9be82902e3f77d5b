import OpenAI, { type APIError } from 'openai';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { RequestLogWriter } from '../../src/relay/infrastructure/request-log.writer.js';
import { costMicroUsd, microPrice } from '../../src/spend/domain/cost.js';
import { bearer, createUserWithKey, type UserWithKey } from '../support/auth.js';
import { pollUntil } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, MODES } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';

const PRICE = { input_per_mtok: 1.234567, output_per_mtok: 7.654321, cached_input_per_mtok: 0.5 };

/**
 * POST /v1/responses (the OpenAI Responses API) through the official SDK, and GET|DELETE
 * /v1/responses/{id} back to the provider and upstream key that created the response. The fake
 * provider's stored responses belong to the upstream key that created them (another key's GET is
 * its 404), and there are two upstream keys: a call sent with whichever key KeyPool picks would
 * fail about half the time.
 */
describe.each(MODES)('Responses API (%s mode)', (mode) => {
  let fx: RelayFixture;
  let alice: UserWithKey;
  let bob: UserWithKey;

  beforeAll(async () => {
    fx = await startRelay(mode, {
      env: { RATE_LIMIT_KEY_RPM: '100000', RATE_LIMIT_USER_RPM: '100000' },
      keys: [
        { key: 'sk-a', priority: 1 },
        { key: 'sk-b', priority: 1 },
      ],
      provider: { pricing: { 'gpt-4o-mini': PRICE } },
    });
    alice = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    bob = await createUserWithKey(fx.gw, fx.adminKey, 'user');
  });
  afterAll(async () => {
    await fx?.close();
  });
  beforeEach(() => fx.fake.reset());

  /** The request's row, once the account (after the answer) is written. */
  const row = async (requestId: string) =>
    (
      await pollUntil(
        async () => {
          await fx.gw.app.get(RequestLogWriter).flush();
          const rows = (await fx.gw.app
            .get(DataSource)
            .query('SELECT * FROM request_log WHERE request_id = $1', [requestId])) as any[];
          return rows[0];
        },
        { timeoutMs: 10_000, what: `request ${requestId} in the request log` },
      )
    ).value;

  const costOf = (usage: { input_tokens: number; output_tokens: number; cached: number }) =>
    String(
      costMicroUsd(
        {
          promptTokens: usage.input_tokens,
          cachedPromptTokens: usage.cached,
          completionTokens: usage.output_tokens,
        },
        microPrice(PRICE),
      ),
    );

  it('create (non-stream): the answer as the provider gave it, usage and cost in the request log', async () => {
    const requestId = randomUUID();
    const { data, response } = await fx
      .sdk(alice.key)
      .responses.create(
        { model: 'gpt-4o-mini', input: 'Say hello', max_output_tokens: 64 },
        { headers: { 'x-request-id': requestId, 'X-Priority': 'high' } },
      )
      .withResponse();
    expect(data.id).toMatch(/^resp_fake/);
    expect(data.output_text).toBe(fx.fake.text);
    expect(data.model).toBe('gpt-4o-mini');
    expect(data.usage!.input_tokens).toBeGreaterThan(2);
    expect(response.headers.get('x-request-id')).toBe(requestId);
    expect(Object.values(fx.keyIds)).toContain(response.headers.get('x-floodgate-provider-key'));
    // the body went upstream as sent (nothing added)
    const seen = fx.fake.requests[0]!;
    expect(seen.path).toBe('/v1/responses');
    expect(seen.body).toEqual({ model: 'gpt-4o-mini', input: 'Say hello', max_output_tokens: 64 });
    const logged = await row(requestId);
    expect(logged).toMatchObject({
      endpoint: 'responses',
      model: 'gpt-4o-mini',
      priority: 'high',
      status: 200,
      stream: false,
      api_key_id: alice.keyId,
      provider_id: fx.providerId,
      prompt_tokens: data.usage!.input_tokens,
      completion_tokens: data.usage!.output_tokens,
    });
    // cached input tokens are priced at the cached rate
    const cached = data.usage!.input_tokens_details.cached_tokens;
    expect(cached).toBeGreaterThan(0);
    expect(logged.cost_micro_usd).toBe(costOf({ ...data.usage!, cached }));
  });

  it('create (stream): every event passes through with its type; usage from response.completed', async () => {
    const requestId = randomUUID();
    const stream = await fx
      .sdk(alice.key)
      .responses.create(
        { model: 'gpt-4o-mini', input: 'Stream please', stream: true },
        { headers: { 'x-request-id': requestId } },
      );
    const types: string[] = [];
    const deltas: string[] = [];
    let completed: OpenAI.Responses.Response | null = null;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') deltas.push(event.delta);
      if (event.type === 'response.completed') completed = event.response;
    }
    const words = fx.fake.text.split(/(?<= )/).length;
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      ...Array<string>(words).fill('response.output_text.delta'),
      'response.output_text.done',
      'response.completed',
    ]);
    expect(deltas.join('')).toBe(fx.fake.text);
    expect(fx.fake.requests[0]!.body).toEqual({ model: 'gpt-4o-mini', input: 'Stream please', stream: true });
    const usage = completed!.usage!;
    const logged = await row(requestId);
    expect(logged).toMatchObject({
      endpoint: 'responses',
      status: 200,
      stream: true,
      prompt_tokens: usage.input_tokens,
      completion_tokens: usage.output_tokens,
    });
    expect(logged.cost_micro_usd).toBe(
      costOf({ ...usage, cached: usage.input_tokens_details.cached_tokens }),
    );
    // the streamed response is remembered too (its id came in response.created)
    const again = await fx.sdk(alice.key).responses.retrieve(completed!.id);
    expect(again.id).toBe(completed!.id);
  });

  it('retrieve, input_items and delete reach the provider and upstream key that created the response', async () => {
    const sdk = fx.sdk(alice.key);
    const created = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'Remember me' });
    const createdWith = fx.fake.requests[0]!.key;
    for (let i = 0; i < 6; i++) {
      const got = await sdk.responses.retrieve(created.id);
      expect(got).toMatchObject({ id: created.id, object: 'response', status: 'completed' });
      expect(got.output_text).toBe(fx.fake.text);
    }
    const items = await sdk.responses.inputItems.list(created.id);
    expect(items.data[0]).toMatchObject({ type: 'message', role: 'user' });
    const calls = fx.fake.requests.filter((r) => r.method === 'GET');
    expect(calls).toHaveLength(7);
    for (const call of calls) expect(call.key).toBe(createdWith);
    expect(calls[6]!.path).toBe(`/v1/responses/${created.id}/input_items`);

    const deleted = await getJson(`${fx.gw.url}/v1/responses/${created.id}`, {
      method: 'DELETE',
      headers: alice.headers,
    });
    expect(deleted.status).toBe(200);
    expect(deleted.body).toEqual({ id: created.id, object: 'response', deleted: true });
    expect(fx.fake.requests.at(-1)).toMatchObject({ method: 'DELETE', key: createdWith });
    // forgotten: 404 without asking the provider
    const upstreamCalls = fx.fake.requests.length;
    const gone = await sdk.responses.retrieve(created.id).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
    expect((gone as APIError).code).toBe('response_not_found');
    expect(fx.fake.requests).toHaveLength(upstreamCalls);
  });

  it('a response created with store: false is not remembered (nothing upstream to fetch)', async () => {
    const sdk = fx.sdk(alice.key);
    const created = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'forget me', store: false });
    const err = await sdk.responses.retrieve(created.id).catch((e: unknown) => e);
    expect((err as APIError).status).toBe(404);
    expect((err as APIError).code).toBe('response_not_found');
    expect(fx.fake.requests).toHaveLength(1);
  });

  it('the SDK’s delete works too', async () => {
    const sdk = fx.sdk(alice.key);
    const created = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'Delete me' });
    await sdk.responses.delete(created.id);
    expect(fx.fake.responses.stored.has(created.id)).toBe(false);
  });

  it('another client key, or an id never created here, gets 404 response_not_found (the provider never asked)', async () => {
    const created = await fx.sdk(alice.key).responses.create({ model: 'gpt-4o-mini', input: 'Mine' });
    fx.fake.reset();
    for (const [method, path] of [
      ['GET', `/v1/responses/${created.id}`],
      ['GET', `/v1/responses/${created.id}/input_items`],
      ['DELETE', `/v1/responses/${created.id}`],
      ['GET', '/v1/responses/resp_never_seen'],
    ] as const) {
      const res = await getJson(`${fx.gw.url}${path}`, { method, headers: bob.headers });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body.error).toMatchObject({
        type: 'invalid_request_error',
        code: 'response_not_found',
        request_id: res.headers.get('x-request-id'),
      });
      expect(res.body.error.message).not.toContain(fx.providerId);
    }
    // nor can another tenant continue it (the upstream key is shared: the provider would accept it)
    const continued = await getJson(`${fx.gw.url}/v1/responses`, {
      method: 'POST',
      headers: bob.jsonHeaders,
      body: JSON.stringify({ model: 'gpt-4o-mini', input: 'and then?', previous_response_id: created.id }),
    });
    expect(continued.status).toBe(404);
    expect(continued.body.error).toMatchObject({ code: 'response_not_found', param: 'previous_response_id' });
    expect(fx.fake.requests).toHaveLength(0);
    // the owner still can
    expect((await fx.sdk(alice.key).responses.retrieve(created.id)).id).toBe(created.id);
  });

  it('previous_response_id goes to the provider that created the response, whatever the model routes to', async () => {
    const other = await FakeProvider.start({ models: ['other-model'] });
    try {
      const provider = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/providers', {
        name: 'other',
        base_url: other.baseUrl,
        models: ['other-model'],
      });
      expect(provider.status).toBe(201);
      await adminCall(fx.gw, fx.adminKey, 'POST', `/api/admin/providers/${provider.body.id}/keys`, {
        label: 'other',
        key: 'sk-other',
      });
      const sdk = fx.sdk(alice.key);
      const first = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'one' });
      // without a previous response, other-model goes to the other provider
      await sdk.responses.create({ model: 'other-model', input: 'elsewhere' });
      expect(other.requests).toHaveLength(1);
      const second = await sdk.responses.create({
        model: 'other-model',
        input: 'two',
        previous_response_id: first.id,
      });
      expect(second.previous_response_id).toBe(first.id);
      expect(other.requests).toHaveLength(1);
      expect(fx.fake.requests.at(-1)!.body).toMatchObject({ previous_response_id: first.id });
      await adminCall(fx.gw, fx.adminKey, 'DELETE', `/api/admin/providers/${provider.body.id}`);
    } finally {
      await other.close();
    }
  });

  it('client limits apply: over the key’s rpm, a 429 with Retry-After', async () => {
    const limited = await createUserWithKey(fx.gw, fx.adminKey, 'user', { key: { limits: { rpm: 1 } } });
    const sdk = fx.sdk(limited.key);
    await sdk.responses.create({ model: 'gpt-4o-mini', input: 'one' });
    const refused = await sdk.responses
      .create({ model: 'gpt-4o-mini', input: 'two' })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect(Number((refused as APIError).headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(fx.fake.requests).toHaveLength(1);
    // priority is checked as on chat: above the key's max_priority → 403
    const capped = await createUserWithKey(fx.gw, fx.adminKey, 'user', { key: { max_priority: 'normal' } });
    await expect(
      fx
        .sdk(capped.key)
        .responses.create({ model: 'gpt-4o-mini', input: 'x' }, { headers: { 'X-Priority': 'urgent' } }),
    ).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
  });

  it('spend budgets: the worst case reads max_output_tokens', async () => {
    const capped = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
      key: { budget: { limit_usd: 0.001, period: 'day' } } as never,
    });
    const sdk = fx.sdk(capped.key);
    // 1,000,000 output tokens at 7.654321 $/Mtok can't fit in 1000 µ$
    const refused = await sdk.responses
      .create({ model: 'gpt-4o-mini', input: 'x', max_output_tokens: 1_000_000 })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect((refused as APIError).code).toBe('budget_exceeded');
    expect(fx.fake.requests).toHaveLength(0);
    // 16 can
    const ok = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'x', max_output_tokens: 16 });
    expect(ok.output_text).toBe(fx.fake.text);
  });

  it('a route alias: the target’s model upstream, the alias as model (JSON) and response.model (events)', async () => {
    const alias = `smart-${randomUUID().slice(0, 8)}`;
    const route = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/routes', {
      model: alias,
      targets: [{ provider_id: fx.providerId, model: 'gpt-4o' }],
    });
    expect(route.status, JSON.stringify(route.body)).toBe(201);
    const sdk = fx.sdk(alice.key);
    const { data, response } = await sdk.responses.create({ model: alias, input: 'route me' }).withResponse();
    expect(data.model).toBe(alias);
    expect(response.headers.get('x-floodgate-route-target')).toBe('fake/gpt-4o');
    expect(fx.fake.requests[0]!.body).toMatchObject({ model: 'gpt-4o', input: 'route me' });
    const stream = await sdk.responses.create({ model: alias, input: 'route me', stream: true });
    const models: string[] = [];
    for await (const event of stream)
      if ('response' in event) models.push((event.response as { model: string }).model);
    expect(models).toEqual([alias, alias, alias]);
    expect(fx.fake.requests[1]!.body.model).toBe('gpt-4o');
    // retrieved later from the target's provider
    expect((await sdk.responses.retrieve(data.id)).id).toBe(data.id);
  });

  it('bad bodies are a 400 naming the field (never sent upstream)', async () => {
    const post = (body: unknown) =>
      getJson(`${fx.gw.url}/v1/responses`, {
        method: 'POST',
        headers: bearer(alice.key),
        body: JSON.stringify(body),
      });
    for (const [body, param] of [
      [{ input: 'x' }, 'model'],
      [{ model: 'gpt-4o-mini', input: 3 }, 'input'],
      [{ model: 'gpt-4o-mini', input: 'x', stream: 'yes' }, 'stream'],
      [{ model: 'gpt-4o-mini', input: 'x', previous_response_id: 5 }, 'previous_response_id'],
      [{ model: 'gpt-4o-mini', input: 'x', max_output_tokens: -1 }, 'max_output_tokens'],
    ] as const) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param });
    }
    const unknown = await post({ model: 'no-such-model', input: 'x' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('model_not_found');
    expect(fx.fake.requests).toHaveLength(0);
  });

  it('the routes are documented (summary, example, error answers)', async () => {
    const doc = (await getJson(`${fx.gw.url}/docs-json`)).body;
    const create = doc.paths['/v1/responses'].post;
    expect(create.summary).toContain('Responses API');
    expect(create.requestBody.content['application/json'].schema.example).toMatchObject({
      input: 'Say hello',
    });
    expect(create.responses['429']).toBeDefined();
    for (const [path, method] of [
      ['/v1/responses/{id}', 'get'],
      ['/v1/responses/{id}', 'delete'],
      ['/v1/responses/{id}/input_items', 'get'],
    ] as const) {
      const op = doc.paths[path][method];
      expect(op.description, `${method} ${path}`).toMatch(/created|same owner check/);
      expect(op.responses['404'].description).toContain('response_not_found');
      expect(op.responses['200']).toBeDefined();
    }
  });

  it('an upstream error on retrieve is relayed in the one error shape with its status', async () => {
    const sdk = fx.sdk(alice.key);
    const created = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'x' });
    fx.fake.when({
      path: `/v1/responses/${created.id}`,
      times: 1,
      reply: {
        status: 400,
        body: { error: { message: 'include is bad', param: 'include', code: 'bad_include' } },
      },
    });
    const res = await getJson(`${fx.gw.url}/v1/responses/${created.id}?include[]=nope`, {
      headers: alice.headers,
    });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({
      code: 'bad_include',
      param: 'include',
      message: 'include is bad',
    });
    expect(fx.fake.requests.at(-1)!.path).toBe(`/v1/responses/${created.id}`);
    fx.fake.when({ path: `/v1/responses/${created.id}`, times: 1, reply: FakeProvider.serverError(500) });
    const failed = await getJson(`${fx.gw.url}/v1/responses/${created.id}`, { headers: alice.headers });
    expect(failed.status).toBe(502);
    expect(failed.body.error.type).toBe('upstream_error');
  });
});
