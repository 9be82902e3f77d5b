import { describe, expect, it } from 'vitest';
import { anthropicChatPayload, chatToMessages, DEFAULT_MAX_TOKENS } from './index.js';

type Json = Record<string, unknown>;

const ok = (body: Json, stream = false): Json => {
  const v = chatToMessages(body, stream);
  if (!v.ok) throw new Error(`refused: ${v.rejection.message}`);
  return v.value;
};
const refused = (body: Json) => {
  const v = chatToMessages(body, false);
  if (v.ok) throw new Error(`accepted: ${JSON.stringify(v.value)}`);
  return v.rejection;
};
const chat = (extra: Json = {}, messages: unknown[] = [{ role: 'user', content: 'hi' }]): Json => ({
  model: 'claude-sonnet-4',
  messages,
  ...extra,
});

describe('chatToMessages: messages', () => {
  it('joins system and developer messages into system, with the default max_tokens', () => {
    const out = ok(
      chat({}, [
        { role: 'system', content: 'Be brief.' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
        { role: 'user', content: 'hi' },
      ]),
    );
    expect(out).toEqual({
      model: 'claude-sonnet-4',
      max_tokens: DEFAULT_MAX_TOKENS,
      system: 'Be brief.\n\nAnswer in French.',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(DEFAULT_MAX_TOKENS).toBe(4096);
  });

  it('merges consecutive same-role messages into one turn of blocks', () => {
    const out = ok(
      chat({}, [
        { role: 'user', content: 'a' },
        { role: 'user', content: [{ type: 'text', text: 'b' }] },
        { role: 'assistant', content: 'c' },
        { role: 'assistant', content: 'd' },
        { role: 'user', content: 'e' },
      ]),
    );
    expect(out.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'a' },
          { type: 'text', text: 'b' },
        ],
      },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'c' },
          { type: 'text', text: 'd' },
        ],
      },
      { role: 'user', content: 'e' },
    ]);
  });

  it('turns image_url parts into base64 (data: URLs) or url images', () => {
    const out = ok(
      chat({}, [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is this?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'high' } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
          ],
        },
      ]),
    );
    expect(out.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'what is this?' },
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
          { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
        ],
      },
    ]);
  });

  it('refuses other image URLs and other part types, naming the part', () => {
    const bad = refused(
      chat({}, [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'ftp://x/y.png' } }] }]),
    );
    expect(bad).toMatchObject({
      status: 400,
      code: 'unsupported_parameter',
      param: 'messages[0].content[0].image_url.url',
    });
    const audio = refused(
      chat({}, [
        { role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'x', format: 'wav' } }] },
      ]),
    );
    expect(audio).toMatchObject({ code: 'unsupported_parameter', param: 'messages[0].content[0].type' });
    expect(audio.message).toContain('input_audio');
  });

  it('turns assistant tool_calls into tool_use blocks and tool messages into one user turn of tool_results', () => {
    const out = ok(
      chat({}, [
        { role: 'user', content: 'weather in Paris and Rome?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
            { id: 'call_2', type: 'function', function: { name: 'weather', arguments: '{"city":"Rome"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '18C' },
        { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: '24C' }] },
        { role: 'user', content: 'thanks' },
      ]),
    );
    expect(out.messages).toEqual([
      { role: 'user', content: 'weather in Paris and Rome?' },
      {
        role: 'assistant',
        content: [
          { type: 'tool_use', id: 'call_1', name: 'weather', input: { city: 'Paris' } },
          { type: 'tool_use', id: 'call_2', name: 'weather', input: { city: 'Rome' } },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'call_1', content: '18C' },
          { type: 'tool_result', tool_use_id: 'call_2', content: [{ type: 'text', text: '24C' }] },
          { type: 'text', text: 'thanks' },
        ],
      },
    ]);
  });

  it('keeps an assistant text before its tool calls, drops empty text, and treats empty arguments as {}', () => {
    const out = ok(
      chat({}, [
        { role: 'user', content: 'x' },
        {
          role: 'assistant',
          content: 'Let me check.',
          tool_calls: [{ id: 'c', type: 'function', function: { name: 'now', arguments: '' } }],
        },
        { role: 'tool', tool_call_id: 'c', content: 'noon' },
        { role: 'assistant', content: '' },
      ]),
    );
    expect(out.messages).toEqual([
      { role: 'user', content: 'x' },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'Let me check.' },
          { type: 'tool_use', id: 'c', name: 'now', input: {} },
        ],
      },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'c', content: 'noon' }] },
    ]);
  });

  it('refuses tool call arguments that are not a JSON object, naming the field', () => {
    for (const args of ['{"city":', '[1,2]', '42']) {
      const r = refused(
        chat({}, [
          { role: 'user', content: 'x' },
          {
            role: 'assistant',
            tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: args } }],
          },
        ]),
      );
      expect(r).toMatchObject({
        status: 400,
        code: 'validation_failed',
        param: 'messages[1].tool_calls[0].function.arguments',
      });
    }
  });

  it('refuses a tool message without tool_call_id, the function role, unknown roles, and no user/assistant turn', () => {
    expect(refused(chat({}, [{ role: 'tool', content: 'x' }])).param).toBe('messages[0].tool_call_id');
    expect(refused(chat({}, [{ role: 'function', name: 'f', content: 'x' }]))).toMatchObject({
      code: 'unsupported_parameter',
      param: 'messages[0].role',
    });
    expect(refused(chat({}, [{ role: 'robot', content: 'x' }])).param).toBe('messages[0].role');
    expect(refused(chat({}, [{ role: 'system', content: 'x' }])).param).toBe('messages');
    expect(refused(chat({}, [{ role: 'user', content: 'x', audio: { id: 'a' } }])).param).toBe(
      'messages[0].audio',
    );
    expect(refused(chat({}, [{ role: 'user', content: 42 }])).param).toBe('messages[0].content');
  });
});

describe('chatToMessages: parameters', () => {
  it('maps sampling, stop, user and max tokens', () => {
    const out = ok(
      chat({
        temperature: 0.2,
        top_p: 0.9,
        stop: 'END',
        user: 'u-42',
        max_completion_tokens: 100,
        max_tokens: 50,
      }),
    );
    expect(out).toMatchObject({
      temperature: 0.2,
      top_p: 0.9,
      stop_sequences: ['END'],
      metadata: { user_id: 'u-42' },
      max_tokens: 100,
    });
    expect(ok(chat({ max_tokens: 50, stop: ['a', 'b'] }))).toMatchObject({
      max_tokens: 50,
      stop_sequences: ['a', 'b'],
    });
    expect(ok(chat({ safety_identifier: 's-1', user: 'u' })).metadata).toEqual({ user_id: 's-1' });
  });

  it('maps tools and every tool_choice', () => {
    const tools = [
      {
        type: 'function',
        function: {
          name: 'weather',
          description: 'Weather of a city',
          parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
      },
      { type: 'function', function: { name: 'now' } },
    ];
    const out = ok(chat({ tools, tool_choice: 'auto' }));
    expect(out.tools).toEqual([
      {
        name: 'weather',
        description: 'Weather of a city',
        input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
      { name: 'now', input_schema: { type: 'object', properties: {} } },
    ]);
    expect(out.tool_choice).toEqual({ type: 'auto' });
    expect(ok(chat({ tools, tool_choice: 'none' })).tool_choice).toEqual({ type: 'none' });
    expect(ok(chat({ tools, tool_choice: 'required' })).tool_choice).toEqual({ type: 'any' });
    expect(
      ok(chat({ tools, tool_choice: { type: 'function', function: { name: 'now' } } })).tool_choice,
    ).toEqual({ type: 'tool', name: 'now' });
    expect(ok(chat({ tools, parallel_tool_calls: false })).tool_choice).toEqual({
      type: 'auto',
      disable_parallel_tool_use: true,
    });
    expect(ok(chat({ tools, tool_choice: 'required', parallel_tool_calls: false })).tool_choice).toEqual({
      type: 'any',
      disable_parallel_tool_use: true,
    });
    expect(ok(chat({ tools, parallel_tool_calls: true })).tool_choice).toBeUndefined();
    expect(ok(chat({ parallel_tool_calls: false })).tool_choice).toBeUndefined(); // no tools: nothing to carry
    expect(refused(chat({ tools: [{ type: 'custom', custom: { name: 'x' } }] }))).toMatchObject({
      code: 'unsupported_parameter',
      param: 'tools[0].type',
    });
    expect(refused(chat({ tools, tool_choice: 'sometimes' })).param).toBe('tool_choice');
  });

  it('sets stream only for streams; the payload marks usage as injected unless the client asked for it', () => {
    expect(ok(chat({ stream: false })).stream).toBeUndefined();
    expect(ok(chat({ stream: true }), true).stream).toBe(true);
    const injected = anthropicChatPayload(chat({ stream: true }), true);
    expect(injected.ok && injected.value.injectedUsage).toBe(true);
    const asked = anthropicChatPayload(chat({ stream: true, stream_options: { include_usage: true } }), true);
    expect(asked.ok && asked.value.injectedUsage).toBe(false);
    expect(asked.ok && JSON.parse(asked.value.payload)).not.toHaveProperty('stream_options');
    const plain = anthropicChatPayload(chat(), false);
    expect(plain.ok && plain.value.injectedUsage).toBe(false);
  });

  it('ignores the documented harmless fields', () => {
    const out = ok(
      chat({
        seed: 7,
        presence_penalty: 0.5,
        frequency_penalty: 0.5,
        store: false,
        metadata: { a: 'b' },
        prompt_cache_key: 'k',
        service_tier: 'auto',
        stream_options: { include_usage: true },
        n: 1,
        logprobs: false,
        response_format: { type: 'text' },
        modalities: ['text'],
        logit_bias: {},
      }),
    );
    expect(out).toEqual({
      model: 'claude-sonnet-4',
      max_tokens: 4096,
      messages: [{ role: 'user', content: 'hi' }],
    });
  });

  it('refuses what would silently change the answer with 400 unsupported_parameter naming it', () => {
    const cases: [Json, string][] = [
      [{ n: 2 }, 'n'],
      [{ logprobs: true }, 'logprobs'],
      [{ top_logprobs: 3 }, 'top_logprobs'],
      [{ response_format: { type: 'json_object' } }, 'response_format'],
      [
        { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } } },
        'response_format',
      ],
      [{ modalities: ['text', 'audio'] }, 'modalities'],
      [{ audio: { voice: 'alloy', format: 'mp3' } }, 'audio'],
      [{ logit_bias: { '50256': -100 } }, 'logit_bias'],
      [{ reasoning_effort: 'high' }, 'reasoning_effort'],
      [{ functions: [{ name: 'f' }] }, 'functions'],
      [{ web_search_options: {} }, 'web_search_options'],
      [{ temperature: 1.5 }, 'temperature'],
    ];
    for (const [extra, param] of cases) {
      const r = refused(chat(extra));
      expect(r, param).toMatchObject({
        status: 400,
        type: 'invalid_request_error',
        code: 'unsupported_parameter',
        param,
      });
      expect(r.message).toContain(param);
    }
  });

  it('refuses malformed values with 400 validation_failed naming the field', () => {
    const cases: [Json, string][] = [
      [{ max_tokens: 0 }, 'max_tokens'],
      [{ max_completion_tokens: 'many' }, 'max_completion_tokens'],
      [{ stop: [1] }, 'stop'],
      [{ user: 5 }, 'user'],
      [{ tools: 'weather' }, 'tools'],
      [{ tools: [{ type: 'function', function: {} }] }, 'tools[0].function.name'],
      [{ parallel_tool_calls: 'no' }, 'parallel_tool_calls'],
      [{ top_p: 'high' }, 'top_p'],
    ];
    for (const [extra, param] of cases)
      expect(refused(chat(extra)), param).toMatchObject({ code: 'validation_failed', param });
  });
});
