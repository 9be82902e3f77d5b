import { describe, expect, it } from 'vitest';
import { SseRelay } from '../sse-relay.js';
import { AnthropicChatStream } from './index.js';

type Json = Record<string, unknown>;

const ev = (type: string, data: Json) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

/** A Messages stream: text, then a tool_use block whose input arrives in pieces. */
const upstream = [
  ev('message_start', {
    message: {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-20250514',
      content: [],
      stop_reason: null,
      usage: {
        input_tokens: 12,
        output_tokens: 1,
        cache_read_input_tokens: 8,
        cache_creation_input_tokens: 0,
      },
    },
  }),
  ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
  ev('ping', {}),
  ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Let me ' } }),
  ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'check.' } }),
  ev('content_block_stop', { index: 0 }),
  ev('content_block_start', {
    index: 1,
    content_block: { type: 'tool_use', id: 'toolu_1', name: 'weather', input: {} },
  }),
  ev('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: '' } }),
  ev('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: '{"city": ' } }),
  ev('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: '"Paris"}' } }),
  ev('content_block_stop', { index: 1 }),
  ev('message_delta', {
    delta: { stop_reason: 'tool_use', stop_sequence: null },
    usage: { output_tokens: 30 },
  }),
  ev('message_stop', {}),
].join('');

/** The client's events as parsed JSON ('[DONE]' kept as a string). */
function chunks(text: string): unknown[] {
  return text
    .split('\n\n')
    .filter((e) => e !== '')
    .map((e) => {
      expect(e.startsWith('data: ')).toBe(true);
      const data = e.slice(6);
      return data === '[DONE]' ? data : (JSON.parse(data) as unknown);
    });
}

const envelope = { id: 'msg_1', object: 'chat.completion.chunk', created: 1_700_000_000 };
const choice = (delta: Json, finish_reason: string | null = null) => ({
  ...envelope,
  model: 'claude-sonnet-4-20250514',
  choices: [{ index: 0, delta, logprobs: null, finish_reason }],
});

describe('AnthropicChatStream', () => {
  it('translates a text + tool_use stream into chat.completion.chunk events, usage chunk when asked', () => {
    const relay = new SseRelay(new AnthropicChatStream(false, null, 1_700_000_000_000));
    const out = relay.push(Buffer.from(upstream)) + relay.end();
    expect(chunks(out)).toEqual([
      choice({ role: 'assistant', content: '' }),
      choice({ content: 'Let me ' }),
      choice({ content: 'check.' }),
      choice({
        tool_calls: [
          { index: 0, id: 'toolu_1', type: 'function', function: { name: 'weather', arguments: '' } },
        ],
      }),
      choice({ tool_calls: [{ index: 0, function: { arguments: '{"city": ' } }] }),
      choice({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
      choice({}, 'tool_calls'),
      {
        ...envelope,
        model: 'claude-sonnet-4-20250514',
        choices: [],
        usage: {
          prompt_tokens: 20,
          completion_tokens: 30,
          total_tokens: 50,
          prompt_tokens_details: { cached_tokens: 8 },
        },
      },
      '[DONE]',
    ]);
    expect(relay.usage).toEqual({ prompt: 20, completion: 30, cached: 8 });
    expect(relay.completionTokens()).toBe(30);
  });

  it('leaves the usage chunk out when the client did not ask, and keeps the usage for accounting', () => {
    const reader = new AnthropicChatStream(true, null);
    const relay = new SseRelay(reader);
    const out = chunks(relay.push(Buffer.from(upstream)) + relay.end());
    expect(out.at(-1)).toBe('[DONE]');
    expect(out.some((c) => typeof c === 'object' && (c as Json).usage !== undefined)).toBe(false);
    expect(reader.usage).toEqual({ prompt: 20, completion: 30, cached: 8 });
  });

  it('gives the same events however the bytes are split', () => {
    const whole = new SseRelay(new AnthropicChatStream(false, 'smart', 0));
    const expected = whole.push(Buffer.from(upstream)) + whole.end();
    const bytes = Buffer.from(upstream);
    for (const size of [1, 2, 7, 13, 64]) {
      const relay = new SseRelay(new AnthropicChatStream(false, 'smart', 0));
      let out = '';
      for (let i = 0; i < bytes.length; i += size) out += relay.push(bytes.subarray(i, i + size));
      out += relay.end();
      expect(out, `split every ${size} bytes`).toBe(expected);
    }
    expect((chunks(expected)[0] as Json).model).toBe('smart');
  });

  it('numbers tool calls from 0 among themselves, whatever their block index', () => {
    const reader = new AnthropicChatStream(true, null);
    const events = [
      ev('content_block_start', {
        index: 2,
        content_block: { type: 'tool_use', id: 'a', name: 'f', input: {} },
      }),
      ev('content_block_start', {
        index: 3,
        content_block: { type: 'tool_use', id: 'b', name: 'g', input: {} },
      }),
      ev('content_block_delta', { index: 3, delta: { type: 'input_json_delta', partial_json: '{}' } }),
    ];
    const out = events.map((e) => chunks(reader.event(e.slice(0, -2), '\n\n'))[0] as Json);
    const calls = out.map((c) => ((c.choices as Json[])[0]!.delta as Json).tool_calls as Json[]);
    expect(calls.map((c) => c[0]!.index)).toEqual([0, 1, 1]);
  });

  it('maps stop reasons to finish reasons and drops ping, thinking and unknown events', () => {
    const finish = (stop_reason: string) => {
      const reader = new AnthropicChatStream(true, null);
      const e = ev('message_delta', { delta: { stop_reason }, usage: { output_tokens: 1 } });
      return ((chunks(reader.event(e.slice(0, -2), '\n\n'))[0] as Json).choices as Json[])[0]!.finish_reason;
    };
    expect(finish('end_turn')).toBe('stop');
    expect(finish('stop_sequence')).toBe('stop');
    expect(finish('max_tokens')).toBe('length');
    expect(finish('refusal')).toBe('content_filter');
    const reader = new AnthropicChatStream(true, null);
    for (const e of [
      ev('ping', {}),
      ev('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'hmm' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'signature_delta', signature: 'x' } }),
      ev('content_block_stop', { index: 0 }),
      ev('something_new', {}),
      'data: not json',
    ])
      expect(reader.event(e.replace(/\n\n$/, ''), '\n\n')).toBe('');
    expect(reader.deliveredChars).toBe(0);
    expect(reader.event(': keep-alive', '\n\n')).toBe(': keep-alive\n\n');
  });

  it('turns an error event into an OpenAI-style error event', () => {
    const reader = new AnthropicChatStream(true, null);
    const e = ev('error', { error: { type: 'overloaded_error', message: 'Overloaded' } });
    expect(chunks(reader.event(e.slice(0, -2), '\n\n'))).toEqual([
      {
        error: {
          type: 'service_unavailable_error',
          code: 'overloaded_error',
          message: 'Overloaded',
          param: null,
        },
      },
    ]);
  });

  it('counts delivered characters for a stream cut short before its usage', () => {
    const relay = new SseRelay(new AnthropicChatStream(true, null));
    relay.push(
      Buffer.from(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: '12345678' } })),
    );
    expect(relay.usage).toBeNull();
    expect(relay.completionTokens()).toBe(2);
  });
});
