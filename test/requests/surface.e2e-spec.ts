import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil } from '../support/cluster.js';
import { FakeAnthropic } from '../support/fake-anthropic.js';
import { MODES } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';

/**
 * Issue 17's "Checked by", end to end through the surfaces a user has: the openai SDK's Responses
 * API (stream and not) to an OpenAI-compatible fake, the Messages API (raw HTTP as the Anthropic
 * SDK sends it) to a fake Anthropic provider, and the openai SDK's chat completion translated to
 * that provider — then each request's usage and cost read back from the request browser
 * (`GET /api/admin/requests`, `GET /api/admin/requests/{id}`), not from the table.
 * Whole-dollar-friendly prices (µ$ per token: 2 in, 10 out) make the expected cost exact.
 */
const PRICE = { input_per_mtok: 2, output_per_mtok: 10, cached_input_per_mtok: 2 };
const CLAUDE = 'claude-sonnet-4';

describe.each(MODES)(
  'surface: usage and cost of Responses, Messages and translated chat in the request browser (%s mode)',
  (mode) => {
    let fx: RelayFixture;
    let ant: FakeAnthropic;

    beforeAll(async () => {
      fx = await startRelay(mode, {
        env: { RATE_LIMIT_KEY_RPM: '100000', RATE_LIMIT_USER_RPM: '100000' },
        provider: { pricing: { 'gpt-4o-mini': PRICE } },
      });
      ant = await FakeAnthropic.start({ keys: ['sk-ant-surface'] });
      const p = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/providers', {
        name: 'claude-surface',
        kind: 'anthropic',
        base_url: ant.baseUrl,
        models: [CLAUDE],
        pricing: { [CLAUDE]: PRICE },
      });
      expect(p.status).toBe(201);
      const k = await adminCall(fx.gw, fx.adminKey, 'POST', `/api/admin/providers/${p.body.id}/keys`, {
        label: 'ant',
        key: 'sk-ant-surface',
      });
      expect(k.status).toBe(201);
    });
    afterAll(async () => {
      await fx?.close();
      await ant?.close();
    });

    /** The request browser's row for a request id (its list, filtered by model), then its detail. */
    async function browse(requestId: string, model: string) {
      const { value: row } = await pollUntil(
        async () => {
          const r = await adminCall(
            fx.gw,
            fx.adminKey,
            'GET',
            `/api/admin/requests?model=${encodeURIComponent(model)}&limit=100`,
          );
          expect(r.status).toBe(200);
          return (r.body.data as any[]).find((x) => x.request_id === requestId);
        },
        { timeoutMs: 15_000, what: `request ${requestId} in the request browser` },
      );
      const detail = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/requests/${row.id}`);
      expect(detail.status).toBe(200);
      expect(detail.body.attempts).toHaveLength(1);
      expect(detail.body.attempts[0]).toMatchObject({ status: 200 });
      return row;
    }

    const expectCost = (row: any, prompt: number, completion: number) => {
      expect(row.prompt_tokens).toBe(prompt);
      expect(row.completion_tokens).toBe(completion);
      expect(row.cost_usd).toBeCloseTo((prompt * 2 + completion * 10) / 1e6, 9);
      expect(row.status).toBe(200);
    };

    it('openai SDK responses.create, non-stream and stream', async () => {
      const client: OpenAI = fx.sdk(fx.adminKey);
      const plain = await client.responses
        .create({ model: 'gpt-4o-mini', input: 'Say hello' })
        .withResponse();
      const u1 = plain.data.usage!;
      const row1 = await browse(plain.response.headers.get('x-request-id')!, 'gpt-4o-mini');
      expect(row1.endpoint).toBe('responses');
      expectCost(row1, u1.input_tokens, u1.output_tokens);

      const streamed = await client.responses
        .create({ model: 'gpt-4o-mini', input: 'Say hello again', stream: true })
        .withResponse();
      let usage: OpenAI.Responses.ResponseUsage | undefined;
      const types = new Set<string>();
      for await (const event of streamed.data) {
        types.add(event.type);
        if (event.type === 'response.completed') usage = event.response.usage;
      }
      expect(types).toContain('response.output_text.delta');
      expect(usage).toBeDefined();
      const row2 = await browse(streamed.response.headers.get('x-request-id')!, 'gpt-4o-mini');
      expect(row2.stream).toBe(true);
      expectCost(row2, usage!.input_tokens, usage!.output_tokens);
    });

    it('Messages API as the Anthropic SDK sends it, non-stream and stream', async () => {
      const send = (stream: boolean) =>
        fetch(`${fx.gw.url}/v1/messages`, {
          method: 'POST',
          headers: {
            'x-api-key': fx.adminKey,
            'anthropic-version': '2023-06-01',
            'content-type': 'application/json',
          },
          body: JSON.stringify({
            model: CLAUDE,
            max_tokens: 64,
            stream,
            messages: [{ role: 'user', content: 'Hello there' }],
          }),
        });
      ant.when({ times: 1, reply: { usage: { input_tokens: 21, output_tokens: 6 } } });
      const plain = await send(false);
      expect(plain.status).toBe(200);
      const body = (await plain.json()) as { usage: { input_tokens: number; output_tokens: number } };
      expect(body.usage).toMatchObject({ input_tokens: 21, output_tokens: 6 });
      const row1 = await browse(plain.headers.get('x-request-id')!, CLAUDE);
      expect(row1.endpoint).toBe('messages');
      expectCost(row1, 21, 6);

      ant.when({ times: 1, reply: { usage: { input_tokens: 13, output_tokens: 4 } } });
      const streamed = await send(true);
      expect(streamed.status).toBe(200);
      const text = await streamed.text();
      expect(text).toContain('event: message_start');
      expect(text).toContain('event: message_stop');
      expectCost(await browse(streamed.headers.get('x-request-id')!, CLAUDE), 13, 4);
    });

    it('openai SDK chat completion translated to the anthropic provider, stream with a tool call', async () => {
      ant.when({ times: 1, reply: { usage: { input_tokens: 30, output_tokens: 9 } } });
      const client: OpenAI = fx.sdk(fx.adminKey);
      const streamed = await client.chat.completions
        .create({
          model: CLAUDE,
          stream: true,
          stream_options: { include_usage: true },
          messages: [{ role: 'user', content: 'Weather in Paris?' }],
          tools: [
            {
              type: 'function',
              function: {
                name: 'weather',
                parameters: { type: 'object', properties: { q: { type: 'string' } } },
              },
            },
          ],
        })
        .withResponse();
      let usage: OpenAI.CompletionUsage | undefined;
      let toolName: string | undefined;
      let finish: string | null = null;
      for await (const chunk of streamed.data) {
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices[0];
        toolName ??= choice?.delta.tool_calls?.[0]?.function?.name;
        if (choice?.finish_reason) finish = choice.finish_reason;
      }
      expect(toolName).toBe('weather');
      expect(finish).toBe('tool_calls');
      expect(usage).toMatchObject({ prompt_tokens: 30, completion_tokens: 9 });
      const row = await browse(streamed.response.headers.get('x-request-id')!, CLAUDE);
      expect(row.endpoint).toBe('chat');
      expectCost(row, 30, 9);
    });
  },
);
