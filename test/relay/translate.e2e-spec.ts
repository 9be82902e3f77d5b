import OpenAI, { BadRequestError, NotFoundError } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { RequestLogWriter } from '../../src/relay/infrastructure/request-log.writer.js';
import { newApiKey } from '../support/auth.js';
import { FakeAnthropic, type AnthropicRecordedRequest } from '../support/fake-anthropic.js';
import { MODES, startGateway, type TestGateway } from '../support/gateway.js';
import { adminCall } from '../support/relay.js';

/**
 * /v1/chat/completions through the official openai SDK on a model an `anthropic` provider serves:
 * the request goes upstream as a Messages request and the answer (JSON or stream) comes back as a
 * chat completion (docs/translation.md). Directly by model id and through a route alias.
 */

const MODEL = 'claude-sonnet-4';
const ALIAS = 'smart-claude';
const PRICE = { input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3 };
/** µ$ for the counts at PRICE, rounded half up (docs/spend.md). */
const micros = (prompt: number, completion: number, cached: number) =>
  Number(
    (BigInt(prompt - cached) * 3_000_000n +
      BigInt(cached) * 300_000n +
      BigInt(completion) * 15_000_000n +
      500_000n) /
      1_000_000n,
  );

const tools: OpenAI.Chat.ChatCompletionFunctionTool[] = [
  {
    type: 'function',
    function: {
      name: 'weather',
      description: 'The weather in a city',
      parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
    },
  },
];

/** The last user turn carries a tool_result: the model answers in text, not with another tool call. */
const answersToolResults = (req: AnthropicRecordedRequest) => {
  const last = req.body?.messages?.at(-1);
  const results = Array.isArray(last?.content)
    ? last.content.filter((b: { type: string }) => b.type === 'tool_result')
    : [];
  if (results.length === 0) return undefined;
  return {
    body: {
      id: 'msg_after_tool',
      type: 'message',
      role: 'assistant',
      model: req.body.model,
      content: [{ type: 'text', text: `It is ${results[0].content} there.` }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 40, output_tokens: 6 },
    },
  };
};

describe.each(MODES)('chat/completions on an anthropic provider, translated (%s mode)', (mode) => {
  let gw: TestGateway;
  let fake: FakeAnthropic;
  let adminKey: string;
  let providerId: string;
  let client: OpenAI;

  beforeAll(async () => {
    fake = await FakeAnthropic.start({ keys: ['sk-ant-1'] });
    adminKey = newApiKey();
    gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey });
    const provider = await adminCall(gw, adminKey, 'POST', '/api/admin/providers', {
      name: 'claude',
      kind: 'anthropic',
      base_url: fake.baseUrl,
      models: [MODEL],
      timeout_ms: 5000,
      pricing: { [MODEL]: PRICE },
    });
    expect(provider.status).toBe(201);
    providerId = provider.body.id;
    const key = await adminCall(gw, adminKey, 'POST', `/api/admin/providers/${providerId}/keys`, {
      label: 'ant-1',
      key: 'sk-ant-1',
    });
    expect(key.status).toBe(201);
    const route = await adminCall(gw, adminKey, 'POST', '/api/admin/routes', {
      model: ALIAS,
      targets: [{ provider_id: providerId, model: MODEL, tier: 1 }],
    });
    expect(route.status).toBe(201);
    client = new OpenAI({ apiKey: adminKey, baseURL: `${gw.url}/v1`, maxRetries: 0, timeout: 20_000 });
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  const logRow = async (requestId: string) => {
    const writer = gw.app.get(RequestLogWriter);
    const db = gw.app.get(DataSource);
    for (let i = 0; i < 100; i++) {
      await writer.flush();
      const rows = (await db.query('SELECT * FROM request_log WHERE request_id = $1', [requestId])) as any[];
      if (rows.length > 0) return rows[0];
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no request_log row for ${requestId}`);
  };

  for (const model of [MODEL, ALIAS]) {
    const how = model === ALIAS ? 'through a route alias' : 'directly';

    it(`chat completion (non-stream) ${how}: Messages request upstream, chat.completion back, usage and cost logged`, async () => {
      fake.when({ times: 1, reply: { usage: { cache_read_input_tokens: 7 } } });
      const { data, response } = await client.chat.completions
        .create({
          model,
          messages: [
            { role: 'system', content: 'Be brief.' },
            { role: 'user', content: 'hi' },
          ],
          temperature: 0.5,
          stop: ['END'],
          max_completion_tokens: 300,
          seed: 1, // ignored
        })
        .withResponse();
      expect(data).toMatchObject({
        object: 'chat.completion',
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: fake.text }, finish_reason: 'stop' }],
      });
      const usage = data.usage!;
      expect(usage.prompt_tokens_details?.cached_tokens).toBe(7);
      expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
      expect(usage.completion_tokens).toBe(fake.text.split(' ').length);

      const seen = fake.requests[0]!;
      expect(seen.path).toBe('/v1/messages');
      expect(seen.key).toBe('sk-ant-1');
      expect(seen.headers['anthropic-version']).toBeTruthy();
      expect(seen.body).toEqual({
        model: MODEL,
        max_tokens: 300,
        system: 'Be brief.',
        messages: [{ role: 'user', content: 'hi' }],
        temperature: 0.5,
        stop_sequences: ['END'],
      });
      if (model === ALIAS) expect(response.headers.get('x-floodgate-route-target')).toBe(`claude/${MODEL}`);

      const row = await logRow(response.headers.get('x-request-id')!);
      expect(row).toMatchObject({
        endpoint: 'chat',
        model,
        status: 200,
        provider_id: providerId,
        stream: false,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
      });
      expect(Number(row.cost_micro_usd)).toBe(micros(usage.prompt_tokens, usage.completion_tokens, 7));
    });

    it(`streams ${how}: chunks with role first, text deltas, finish_reason; usage chunk only when asked`, async () => {
      const stream = await client.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
      });
      const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
      for await (const chunk of stream) chunks.push(chunk);
      expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
      expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === model)).toBe(true);
      expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(fake.text);
      expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
      expect(chunks.some((c) => c.usage)).toBe(false);
      expect(fake.requests[0]!.body.stream).toBe(true);

      const { data: withUsage, response } = await client.chat.completions
        .create({
          model,
          messages: [{ role: 'user', content: 'hi again' }],
          stream: true,
          stream_options: { include_usage: true },
        })
        .withResponse();
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of withUsage) if (chunk.usage) usage = chunk.usage;
      expect(usage?.completion_tokens).toBe(fake.text.split(' ').length);
      expect(usage?.prompt_tokens).toBeGreaterThan(0);
      expect(fake.requests[1]!.body).not.toHaveProperty('stream_options');
      const row = await logRow(response.headers.get('x-request-id')!);
      expect(row).toMatchObject({
        model,
        status: 200,
        stream: true,
        prompt_tokens: usage!.prompt_tokens,
        completion_tokens: usage!.completion_tokens,
      });
      expect(Number(row.cost_micro_usd)).toBe(micros(usage!.prompt_tokens, usage!.completion_tokens, 0));
    });

    it(`tools ${how}: a tool call answered (JSON and stream), then the tool result sent back`, async () => {
      fake.when({ reply: answersToolResults });
      const first = await client.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        tools,
        tool_choice: 'required',
        parallel_tool_calls: false,
      });
      expect(first.choices[0]!.finish_reason).toBe('tool_calls');
      const call = first.choices[0]!.message
        .tool_calls![0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
      expect(call).toMatchObject({
        type: 'function',
        function: { name: 'weather', arguments: '{"q":"fake"}' },
      });
      expect(fake.requests[0]!.body.tools).toEqual([
        {
          name: 'weather',
          description: 'The weather in a city',
          input_schema: tools[0]!.function.parameters,
        },
      ]);
      expect(fake.requests[0]!.body.tool_choice).toEqual({ type: 'any', disable_parallel_tool_use: true });

      // the same through a stream: the tool call assembled from its deltas
      const stream = await client.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        tools,
        stream: true,
      });
      const calls: Record<number, { id?: string; name?: string; arguments: string }> = {};
      let finish: string | null = null;
      for await (const chunk of stream) {
        for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
          const c = (calls[d.index] ??= { arguments: '' });
          if (d.id) c.id = d.id;
          if (d.function?.name) c.name = d.function.name;
          c.arguments += d.function?.arguments ?? '';
        }
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      expect(finish).toBe('tool_calls');
      expect(Object.values(calls)).toEqual([
        { id: expect.stringMatching(/^toolu_/), name: 'weather', arguments: '{"q":"fake"}' },
      ]);

      // the SDK's own stream helper assembles the same completion from the chunks
      const final = await client.chat.completions
        .stream({ model, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools })
        .finalChatCompletion();
      expect(final.choices[0]!.finish_reason).toBe('tool_calls');
      expect(final.choices[0]!.message.content).toBe(fake.text);
      expect(final.choices[0]!.message.tool_calls![0]).toMatchObject({
        type: 'function',
        function: { name: 'weather', arguments: '{"q":"fake"}' },
      });
      fake.reset();
      fake.when({ reply: answersToolResults });

      // the tool's result goes back: the model answers in text
      const second = await client.chat.completions.create({
        model,
        messages: [
          { role: 'user', content: 'Weather in Paris?' },
          first.choices[0]!.message,
          { role: 'tool', tool_call_id: call.id, content: 'sunny' },
        ],
        tools,
      });
      expect(second.choices[0]!.message.content).toBe('It is sunny there.');
      expect(second.choices[0]!.finish_reason).toBe('stop');
      expect(second.usage).toMatchObject({ prompt_tokens: 40, completion_tokens: 6, total_tokens: 46 });
      expect(fake.requests[0]!.body.messages).toEqual([
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: [
            { type: 'text', text: fake.text },
            { type: 'tool_use', id: call.id, name: 'weather', input: { q: 'fake' } },
          ],
        },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'sunny' }] },
      ]);
    });

    it(`a parameter the translation cannot carry ${how} → 400 unsupported_parameter naming it, nothing sent`, async () => {
      for (const [extra, param] of [
        [{ n: 2 }, 'n'],
        [{ logprobs: true }, 'logprobs'],
        [{ response_format: { type: 'json_object' } }, 'response_format'],
      ] as const) {
        const err = await client.chat.completions
          .create({ model, messages: [{ role: 'user', content: 'hi' }], ...extra } as never)
          .catch((e: unknown) => e);
        expect(err, param).toBeInstanceOf(BadRequestError);
        const e = err as BadRequestError;
        expect(e.status).toBe(400);
        expect(e.code).toBe('unsupported_parameter');
        expect(e.param).toBe(param);
        expect(e.message).toContain(param);
      }
      const badArgs = await client.chat.completions
        .create({
          model,
          messages: [
            { role: 'user', content: 'x' },
            {
              role: 'assistant',
              tool_calls: [{ id: 'c1', type: 'function', function: { name: 'weather', arguments: '{oops' } }],
            },
            { role: 'tool', tool_call_id: 'c1', content: 'r' },
          ],
        })
        .catch((e: unknown) => e);
      expect(badArgs).toBeInstanceOf(BadRequestError);
      expect((badArgs as BadRequestError).param).toBe('messages[1].tool_calls[0].function.arguments');
      expect(fake.requests).toHaveLength(0);
    });
  }

  it('an Anthropic 4xx comes back in the one error shape, its status and message kept', async () => {
    fake.when({
      times: 1,
      reply: FakeAnthropic.invalidRequest('messages.0.content: text content blocks must be non-empty'),
    });
    const bad = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: '' }] })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(BadRequestError);
    expect((bad as BadRequestError).code).toBe('invalid_request_error');
    expect((bad as BadRequestError).message).toContain('text content blocks must be non-empty');
    fake.when({
      times: 1,
      reply: {
        status: 404,
        body: { type: 'error', error: { type: 'not_found_error', message: 'model: claude-x' } },
      },
    });
    const missing = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(NotFoundError);
    expect((missing as NotFoundError).code).toBe('not_found_error');
  });

  it('endpoints an anthropic provider cannot serve → 400 endpoint_not_supported naming model', async () => {
    const res = await adminCall(gw, adminKey, 'POST', '/v1/embeddings', { model: MODEL, input: 'x' });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'endpoint_not_supported', param: 'model' });
  });
});
