import OpenAI, { APIError, BadRequestError } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import { RelayDispatcher } from '../../src/relay/dispatcher.js';
import { RequestLogWriter } from '../../src/relay/infrastructure/request-log.writer.js';
import { DataSource } from 'typeorm';
import { createUserWithKey, newApiKey } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import { MODES } from '../support/gateway.js';
import { startRelay, type RelayFixture } from '../support/relay.js';

describe.each(MODES)('relay through the official openai SDK (%s mode)', (mode) => {
  let fx: RelayFixture;
  beforeAll(async () => {
    fx = await startRelay(mode, {
      keys: [
        { key: 'sk-a', priority: 1 },
        { key: 'sk-b', priority: 1 },
      ],
    });
  });
  afterAll(async () => {
    await fx?.close();
  });
  beforeEach(() => fx.fake.reset());

  it('chat completion (non-stream) with the gateway headers, never touching the queue', async () => {
    const { data, response } = await fx.client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    expect(data.choices[0]!.message.content).toBe(fx.fake.text);
    expect(data.usage?.total_tokens).toBeGreaterThan(0);
    expect(response.headers.get('x-request-id')).toBeTruthy();
    expect(response.headers.get('x-floodgate-queue-ms')).toBe('0');
    expect(Number(response.headers.get('x-floodgate-overhead-ms'))).toBeGreaterThanOrEqual(0);
    expect(Object.values(fx.keyIds)).toContain(response.headers.get('x-floodgate-provider-key'));
    expect(fx.gw.app.get(RelayDispatcher).granted).toBe(0);
    // The upstream saw the upstream key, never the client's.
    const seen = fx.fake.requests[0]!;
    expect(['sk-a', 'sk-b']).toContain(seen.key);
    expect(JSON.stringify(seen.headers)).not.toContain(fx.adminKey);
  });

  it('writes one request_log row per request, in batches, with tokens and timings', async () => {
    const { response } = await fx.client.chat.completions
      .create(
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'log me' }] },
        { headers: { 'X-Priority': 'high' } },
      )
      .withResponse();
    const requestId = response.headers.get('x-request-id')!;
    // The row is accounted just after the answer is sent: flush until it is there.
    let rows: any[] = [];
    for (let i = 0; i < 50 && rows.length === 0; i++) {
      await fx.gw.app.get(RequestLogWriter).flush();
      rows = await fx.gw.app
        .get(DataSource)
        .query('SELECT * FROM request_log WHERE request_id = $1', [requestId]);
      if (rows.length === 0) await new Promise((r) => setTimeout(r, 20));
    }
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      endpoint: 'chat',
      model: 'gpt-4o-mini',
      priority: 'high',
      status: 200,
      provider_id: fx.providerId,
      provider_key_id: response.headers.get('x-floodgate-provider-key'),
      queue_ms: 0,
      attempts: 1,
      stream: false,
    });
    expect(rows[0].prompt_tokens + rows[0].completion_tokens).toBeGreaterThan(0);
  });

  it('streams chunk by chunk and strips the usage chunk it asked for on the client’s behalf', async () => {
    const stream = await fx.client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const deltas: string[] = [];
    let usageChunks = 0;
    for await (const chunk of stream) {
      if (chunk.usage) usageChunks++;
      const d = chunk.choices[0]?.delta?.content;
      if (d) deltas.push(d);
    }
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe(fx.fake.text);
    expect(usageChunks).toBe(0);
    expect(fx.fake.requests[0]!.body.stream_options).toEqual({ include_usage: true });
  });

  it('keeps the usage chunk when the client asked for it', async () => {
    const stream = await fx.client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    expect(usage?.completion_tokens).toBeGreaterThan(0);
  });

  it('completions, embeddings, models list and retrieve (ids with a slash)', async () => {
    const completion = await fx.client.completions.create({ model: 'gpt-4o-mini', prompt: 'Say hi' });
    expect(completion.choices[0]!.text).toBe(fx.fake.text);
    const embedding = await fx.client.embeddings.create({ model: 'text-embedding-3-small', input: 'hello' });
    expect(embedding.data[0]!.embedding.length).toBeGreaterThan(0);
    const models = await fx.client.models.list();
    expect(models.data.map((m) => m.id).sort()).toEqual([...fx.fake.models].sort());
    const slash = await fx.client.models.retrieve('org/model-with-slash');
    expect(slash).toMatchObject({ id: 'org/model-with-slash', object: 'model', owned_by: 'fake' });
  });

  it('each error class surfaces as the SDK’s matching error type', async () => {
    await expect(
      fx.client.chat.completions.create({
        model: 'no-such-model',
        messages: [{ role: 'user', content: 'x' }],
      }),
    ).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(fx.client.models.retrieve('no/such-model')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(
      fx.sdk(newApiKey()).chat.completions.create({ model: 'gpt-4o-mini', messages: [] }),
    ).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const bad = await fx.client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: 'nope' as never })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect((bad as BadRequestError).param).toBe('messages');
    const limited = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
      key: { max_priority: 'normal', allowed_models: ['gpt-4o-mini'] },
    });
    const userSdk = fx.sdk(limited.key);
    await expect(
      userSdk.chat.completions.create(
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
        { headers: { 'X-Priority': 'urgent' } },
      ),
    ).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
    await expect(
      userSdk.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
    await expect(
      userSdk.chat.completions.create(
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
        { headers: { 'X-Priority': 'asap' } },
      ),
    ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    const viewer = await createUserWithKey(fx.gw, fx.adminKey, 'viewer');
    await expect(
      fx
        .sdk(viewer.key)
        .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
  });

  it('charges the client key’s TPM with the real usage: over it, the next request is refused up front', async () => {
    const small = await createUserWithKey(fx.gw, fx.adminKey, 'user', { key: { limits: { tpm: 5 } } });
    const sdk = fx.sdk(small.key);
    const first = await sdk.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'x' }],
    });
    expect(first.usage!.total_tokens).toBeGreaterThan(5);
    let refused: unknown = null;
    for (let i = 0; i < 20 && !refused; i++) {
      refused = await sdk.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })
        .then(
          () => null,
          (e: unknown) => e,
        );
      if (!refused) await new Promise((r) => setTimeout(r, 50)); // the charge is asynchronous
    }
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect(Number((refused as APIError).headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('a 429 from one upstream key is retried on another and the client gets 200', async () => {
    fx.fake.when({ key: 'sk-a', reply: FakeProvider.rateLimited(30) });
    fx.fake.when({ key: 'sk-b', times: 0, reply: {} });
    for (let i = 0; i < 2; i++) {
      const r = await fx.client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'x' }],
      });
      expect(r.choices[0]!.message.content).toBe(fx.fake.text);
    }
    await fx.gw.app.get(KeyPoolService).clearCooldown(fx.providerId, fx.keyIds['sk-a']!);
  });

  it('every key 429ing: the client gets 429 with Retry-After and the upstream saw at most 2 requests', async () => {
    fx.fake.when({ reply: FakeProvider.rateLimited(7) });
    const err = (await fx.client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(Number(err.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(fx.fake.requests.length).toBeLessThanOrEqual(2);
    const pool = fx.gw.app.get(KeyPoolService);
    for (const id of Object.values(fx.keyIds)) await pool.clearCooldown(fx.providerId, id);
  });

  it('upstream 500 on every key → 502 (InternalServerError) after one retry; timeouts → 504', async () => {
    fx.fake.when({ reply: { status: 500 } });
    const err = (await fx.client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err.status).toBe(502);
    expect(fx.fake.requests).toHaveLength(2);
  });
});
