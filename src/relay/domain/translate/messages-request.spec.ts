import { describe, expect, it } from 'vitest';
import { exchangeFor } from '../exchange.js';
import { messagesToChat, openAiMessagesPayload } from './index.js';

type Json = Record<string, unknown>;

const ok = (body: Json, stream = false): Json => {
  const v = messagesToChat(body, stream);
  if (!v.ok) throw new Error(`refused: ${v.rejection.message}`);
  return v.value;
};
const refused = (body: Json) => {
  const v = messagesToChat(body, false);
  if (v.ok) throw new Error(`accepted: ${JSON.stringify(v.value)}`);
  return v.rejection;
};
const req = (extra: Json = {}, messages: unknown[] = [{ role: 'user', content: 'hi' }]): Json => ({
  model: 'gpt-4o',
  max_tokens: 256,
  messages,
  ...extra,
});

describe('messagesToChat', () => {
  it('puts the system prompt first and keeps string turns', () => {
    expect(
      ok(
        req({
          system: [
            { type: 'text', text: 'A' },
            { type: 'text', text: 'B', cache_control: { type: 'ephemeral' } },
          ],
        }),
      ),
    ).toEqual({
      model: 'gpt-4o',
      max_tokens: 256,
      messages: [
        { role: 'system', content: 'A\n\nB' },
        { role: 'user', content: 'hi' },
      ],
    });
    expect((ok(req({ system: 'S' })).messages as Json[])[0]).toEqual({ role: 'system', content: 'S' });
  });

  it('turns tool_use blocks into tool_calls and tool_result blocks into tool messages before the user text', () => {
    const out = ok(
      req({}, [
        { role: 'user', content: 'weather?' },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'hmm', signature: 's' },
            { type: 'text', text: 'Checking.' },
            { type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Paris' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: '18C' }] },
            { type: 'text', text: 'and tomorrow?' },
          ],
        },
      ]),
    );
    expect(out.messages).toEqual([
      { role: 'user', content: 'weather?' },
      {
        role: 'assistant',
        content: 'Checking.',
        tool_calls: [
          { id: 'toolu_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'toolu_1', content: '18C' },
      { role: 'user', content: 'and tomorrow?' },
    ]);
  });

  it('turns images into image_url parts (base64 as a data: URL)', () => {
    const out = ok(
      req({}, [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what?' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
            { type: 'image', source: { type: 'url', url: 'https://x/y.png' } },
          ],
        },
      ]),
    );
    expect(out.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'what?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
          { type: 'image_url', image_url: { url: 'https://x/y.png' } },
        ],
      },
    ]);
  });

  it('maps tools, tool_choice, stop_sequences, sampling, metadata.user_id; streams ask for usage', () => {
    const out = ok(
      req({
        tools: [{ name: 'weather', description: 'W', input_schema: { type: 'object', properties: {} } }],
        tool_choice: { type: 'any', disable_parallel_tool_use: true },
        stop_sequences: ['END'],
        temperature: 0.3,
        top_p: 0.8,
        metadata: { user_id: 'u1' },
        thinking: { type: 'enabled', budget_tokens: 1024 },
        stream: true,
      }),
      true,
    );
    expect(out).toEqual({
      model: 'gpt-4o',
      max_tokens: 256,
      messages: [{ role: 'user', content: 'hi' }],
      tools: [
        {
          type: 'function',
          function: { name: 'weather', description: 'W', parameters: { type: 'object', properties: {} } },
        },
      ],
      tool_choice: 'required',
      parallel_tool_calls: false,
      stop: ['END'],
      temperature: 0.3,
      top_p: 0.8,
      user: 'u1',
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(ok(req({ tool_choice: { type: 'tool', name: 'f' } })).tool_choice).toEqual({
      type: 'function',
      function: { name: 'f' },
    });
    expect(ok(req({ tool_choice: { type: 'auto' } })).tool_choice).toBe('auto');
    expect(ok(req({ tool_choice: { type: 'none' } })).tool_choice).toBe('none');
    const payload = openAiMessagesPayload(req({ stream: true }), true);
    expect(payload.ok && payload.value.injectedUsage).toBe(true);
  });

  it('refuses server tools, documents, unknown fields with 400 naming them', () => {
    expect(refused(req({ tools: [{ type: 'web_search_20250305', name: 'web_search' }] }))).toMatchObject({
      code: 'unsupported_parameter',
      param: 'tools[0].type',
    });
    expect(
      refused(
        req({}, [
          {
            role: 'user',
            content: [
              { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'x' } },
            ],
          },
        ]),
      ),
    ).toMatchObject({ code: 'unsupported_parameter', param: 'messages[0].content[0].type' });
    expect(refused(req({ mcp_servers: [] }))).toMatchObject({
      code: 'unsupported_parameter',
      param: 'mcp_servers',
    });
    expect(refused(req({}, [{ role: 'system', content: 'x' }]))).toMatchObject({
      code: 'validation_failed',
      param: 'messages[0].role',
    });
    expect(refused(req({ tool_choice: { type: 'maybe' } })).param).toBe('tool_choice.type');
  });

  it('is the openai:messages exchange, sent to /chat/completions; a cut stream ends in the Anthropic dialect', () => {
    const exchange = exchangeFor('messages', 'openai');
    expect(exchange?.name).toBe('openai:messages');
    expect(exchange?.path).toBe('/chat/completions');
    // a stream the upstream cuts ends with an Anthropic error event, as the client's dialect has it
    const last = exchange!.interrupted!('req-1');
    expect(last.startsWith('event: error\ndata: ')).toBe(true);
    expect(JSON.parse(last.split('\n')[1]!.slice(6))).toMatchObject({
      type: 'error',
      error: { code: 'upstream_stream_interrupted', request_id: 'req-1' },
    });
    expect(exchangeFor('chat', 'anthropic')!.interrupted).toBeUndefined(); // chat clients get the OpenAI-style one
  });
});
