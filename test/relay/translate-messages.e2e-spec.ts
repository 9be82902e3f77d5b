import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { RequestLogWriter } from '../../src/relay/infrastructure/request-log.writer.js';
import { getJson, MODES } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';

/**
 * /v1/messages (the Anthropic Messages API, as Claude Code and the Anthropic SDK send it) on a model
 * an OpenAI-compatible provider serves: sent upstream as chat/completions, the answer (JSON or
 * stream) translated back to a Messages answer (docs/translation.md, "The other way").
 */

const MODEL = 'gpt-4o-mini';
const ALIAS = 'oa-alias';

type Json = Record<string, any>;

/** An Anthropic SSE text as [event name, data] pairs, checking each event's `event:` line names its data's type. */
function events(text: string): [string, Json][] {
  return text
    .split('\n\n')
    .filter((e) => e.trim() !== '')
    .map((e) => {
      const lines = e.split('\n');
      const name = lines.find((l) => l.startsWith('event: '))!.slice(7);
      const data = JSON.parse(lines.find((l) => l.startsWith('data: '))!.slice(6)) as Json;
      expect(data.type).toBe(name);
      return [name, data];
    });
}

describe.each(MODES)('/v1/messages on an openai-kind provider, translated (%s mode)', (mode) => {
  let fx: RelayFixture;
  beforeAll(async () => {
    fx = await startRelay(mode, { keys: [{ key: 'sk-oa-1' }] });
    const route = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/routes', {
      model: ALIAS,
      targets: [{ provider_id: fx.providerId, model: MODEL }],
    });
    expect(route.status).toBe(201);
  });
  afterAll(async () => {
    await fx?.close();
  });
  beforeEach(() => fx.fake.reset());

  const headers = (extra: Record<string, string> = {}) => ({
    'x-api-key': fx.adminKey,
    'anthropic-version': '2023-06-01',
    'content-type': 'application/json',
    ...extra,
  });
  const messages = (payload: unknown, extra: Record<string, string> = {}) =>
    getJson(`${fx.gw.url}/v1/messages`, {
      method: 'POST',
      headers: headers(extra),
      body: JSON.stringify(payload),
    });
  const logRow = async (requestId: string) => {
    for (let i = 0; i < 100; i++) {
      await fx.gw.app.get(RequestLogWriter).flush();
      const rows = (await fx.gw.app
        .get(DataSource)
        .query('SELECT * FROM request_log WHERE request_id = $1', [requestId])) as Json[];
      if (rows.length > 0) return rows[0]!;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no request_log row for ${requestId}`);
  };

  for (const model of [MODEL, ALIAS]) {
    const how = model === ALIAS ? 'through a route alias' : 'directly';

    it(`JSON ${how}: chat/completions upstream, a Messages answer back, usage logged`, async () => {
      const requestId = randomUUID();
      const res = await messages(
        {
          model,
          max_tokens: 100,
          system: [{ type: 'text', text: 'Be brief.' }],
          messages: [{ role: 'user', content: 'Say hello' }],
          stop_sequences: ['END'],
        },
        { 'x-request-id': requestId },
      );
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body).toMatchObject({
        type: 'message',
        role: 'assistant',
        model,
        content: [{ type: 'text', text: fx.fake.text }],
        stop_reason: 'end_turn',
        stop_sequence: null,
      });
      expect(res.body.usage.input_tokens).toBeGreaterThan(0);
      expect(res.body.usage.output_tokens).toBeGreaterThan(0);
      const seen = fx.fake.requests[0]!;
      expect(seen.path).toBe('/v1/chat/completions');
      expect(seen.key).toBe('sk-oa-1');
      expect(seen.body).toEqual({
        model: MODEL,
        max_tokens: 100,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Say hello' },
        ],
        stop: ['END'],
      });
      const row = await logRow(requestId);
      expect(row).toMatchObject({
        endpoint: 'messages',
        model,
        status: 200,
        prompt_tokens: res.body.usage.input_tokens,
        completion_tokens: res.body.usage.output_tokens,
      });
    });

    it(`stream ${how}: chunks become message_start, a text block, message_delta with usage, message_stop`, async () => {
      const res = await fetch(`${fx.gw.url}/v1/messages`, {
        method: 'POST',
        headers: headers(),
        body: JSON.stringify({
          model,
          max_tokens: 50,
          messages: [{ role: 'user', content: 'hi' }],
          stream: true,
        }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/event-stream');
      const all = events(await res.text());
      const names = all.map(([n]) => n);
      expect(names[0]).toBe('message_start');
      expect(names.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
      expect(all[0]![1].message.model).toBe(model);
      const text = all
        .filter(([n, d]) => n === 'content_block_delta' && d.delta.type === 'text_delta')
        .map(([, d]) => d.delta.text as string)
        .join('');
      expect(text).toBe(fx.fake.text);
      const delta = all.at(-2)![1];
      expect(delta.delta.stop_reason).toBe('end_turn');
      expect(delta.usage.output_tokens).toBeGreaterThan(0);
      expect(delta.usage.input_tokens).toBeGreaterThan(0);
      expect(fx.fake.requests[0]!.body.stream_options).toEqual({ include_usage: true });
    });

    it(`tools ${how}: a tool_calls answer becomes tool_use, the tool_result goes back as a tool message`, async () => {
      fx.fake.when({
        times: 1,
        reply: {
          body: {
            id: 'chatcmpl-t',
            object: 'chat.completion',
            created: 1,
            model: MODEL,
            choices: [
              {
                index: 0,
                message: {
                  role: 'assistant',
                  content: null,
                  tool_calls: [
                    {
                      id: 'call_1',
                      type: 'function',
                      function: { name: 'weather', arguments: '{"city":"Paris"}' },
                    },
                  ],
                },
                finish_reason: 'tool_calls',
              },
            ],
            usage: { prompt_tokens: 20, completion_tokens: 8, total_tokens: 28 },
          },
        },
      });
      const tools = [
        {
          name: 'weather',
          description: 'Weather',
          input_schema: { type: 'object', properties: { city: { type: 'string' } } },
        },
      ];
      const first = await messages({
        model,
        max_tokens: 100,
        tools,
        tool_choice: { type: 'auto' },
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
      });
      expect(first.status).toBe(200);
      expect(first.body).toMatchObject({
        stop_reason: 'tool_use',
        content: [{ type: 'tool_use', id: 'call_1', name: 'weather', input: { city: 'Paris' } }],
        usage: { input_tokens: 20, output_tokens: 8 },
      });
      expect(fx.fake.requests[0]!.body.tools).toEqual([
        {
          type: 'function',
          function: { name: 'weather', description: 'Weather', parameters: tools[0]!.input_schema },
        },
      ]);
      expect(fx.fake.requests[0]!.body.tool_choice).toBe('auto');

      const second = await messages({
        model,
        max_tokens: 100,
        tools,
        messages: [
          { role: 'user', content: 'Weather in Paris?' },
          { role: 'assistant', content: first.body.content },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_1', content: 'sunny' }] },
        ],
      });
      expect(second.status).toBe(200);
      expect(second.body.content).toEqual([{ type: 'text', text: fx.fake.text }]);
      expect(fx.fake.requests[1]!.body.messages).toEqual([
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
      ]);
    });

    it(`what the translation cannot carry ${how} → 400 in the Anthropic-compatible shape naming it, nothing sent`, async () => {
      const res = await messages({
        model,
        max_tokens: 10,
        tools: [{ type: 'web_search_20250305', name: 'web_search' }],
        messages: [{ role: 'user', content: 'x' }],
      });
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({
        type: 'error',
        error: { type: 'invalid_request_error', code: 'unsupported_parameter', param: 'tools[0].type' },
      });
      expect(fx.fake.requests).toHaveLength(0);
    });
  }
});
