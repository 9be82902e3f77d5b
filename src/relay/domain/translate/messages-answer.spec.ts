import { describe, expect, it } from 'vitest';
import { SseRelay } from '../sse-relay.js';
import { chatCompletionToMessage, chatCompletionUsage, OpenAiMessagesStream } from './index.js';

type Json = Record<string, unknown>;

describe('chatCompletionToMessage', () => {
  it('answers an Anthropic message: text, tool_use, stop_reason, usage without the cached tokens in input_tokens', () => {
    const completion = {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      model: 'gpt-4o-2024',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: 'Checking.',
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
      usage: {
        prompt_tokens: 50,
        completion_tokens: 9,
        total_tokens: 59,
        prompt_tokens_details: { cached_tokens: 20 },
      },
    };
    expect(JSON.parse(chatCompletionToMessage(JSON.stringify(completion), 'alias'))).toEqual({
      id: 'chatcmpl-1',
      type: 'message',
      role: 'assistant',
      model: 'alias',
      content: [
        { type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: 'call_1', name: 'weather', input: { city: 'Paris' } },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: {
        input_tokens: 30,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 20,
        output_tokens: 9,
      },
    });
    expect(chatCompletionUsage(JSON.stringify(completion))).toEqual({
      prompt: 50,
      completion: 9,
      cached: 20,
    });
    const finish = (finish_reason: string) =>
      JSON.parse(
        chatCompletionToMessage(
          JSON.stringify({ ...completion, choices: [{ message: { content: 'x' }, finish_reason }] }),
          null,
        ),
      ).stop_reason;
    expect([finish('stop'), finish('length'), finish('content_filter')]).toEqual([
      'end_turn',
      'max_tokens',
      'refusal',
    ]);
    expect(chatCompletionToMessage('nope', null)).toBe('nope');
  });
});

const chunk = (delta: Json, finish_reason: string | null = null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-9', object: 'chat.completion.chunk', model: 'gpt-4o', choices: [{ index: 0, delta, finish_reason }] })}\n\n`;
const upstream =
  chunk({ role: 'assistant', content: '' }) +
  chunk({ content: 'Let me ' }) +
  chunk({ content: 'check.' }) +
  chunk({
    tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'weather', arguments: '' } }],
  }) +
  chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }) +
  chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }) +
  chunk({}, 'tool_calls') +
  `data: ${JSON.stringify({ id: 'chatcmpl-9', choices: [], usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 } })}\n\n` +
  'data: [DONE]\n\n';

function events(text: string): [string, Json][] {
  return text
    .split('\n\n')
    .filter((e) => e !== '')
    .map((e) => {
      const [type, data] = e.split('\n');
      expect(type!.startsWith('event: ')).toBe(true);
      const parsed = JSON.parse(data!.slice(6)) as Json;
      expect(parsed.type).toBe(type!.slice(7));
      return [type!.slice(7), parsed];
    });
}

describe('OpenAiMessagesStream', () => {
  it('translates chunks into a Messages stream, whatever the split', () => {
    const expected = (() => {
      const relay = new SseRelay(new OpenAiMessagesStream(null));
      return relay.push(Buffer.from(upstream)) + relay.end();
    })();
    expect(
      events(expected).map(([type, d]) =>
        type === 'content_block_delta' ? [type, d.index, d.delta] : [type, d.index],
      ),
    ).toEqual([
      ['message_start', undefined],
      ['content_block_start', 0],
      ['content_block_delta', 0, { type: 'text_delta', text: 'Let me ' }],
      ['content_block_delta', 0, { type: 'text_delta', text: 'check.' }],
      ['content_block_stop', 0],
      ['content_block_start', 1],
      ['content_block_delta', 1, { type: 'input_json_delta', partial_json: '{"city":' }],
      ['content_block_delta', 1, { type: 'input_json_delta', partial_json: '"Paris"}' }],
      ['content_block_stop', 1],
      ['message_delta', undefined],
      ['message_stop', undefined],
    ]);
    const all = events(expected);
    expect(all[0]![1].message).toMatchObject({
      id: 'chatcmpl-9',
      role: 'assistant',
      model: 'gpt-4o',
      content: [],
    });
    expect(all[5]![1].content_block).toEqual({ type: 'tool_use', id: 'call_1', name: 'weather', input: {} });
    expect(all[9]![1]).toMatchObject({
      delta: { stop_reason: 'tool_use', stop_sequence: null },
      usage: { input_tokens: 12, output_tokens: 7, cache_read_input_tokens: 0 },
    });
    const bytes = Buffer.from(upstream);
    for (const size of [1, 5, 33]) {
      const relay = new SseRelay(new OpenAiMessagesStream(null));
      let out = '';
      for (let i = 0; i < bytes.length; i += size) out += relay.push(bytes.subarray(i, i + size));
      expect(out + relay.end()).toBe(expected);
      expect(relay.usage).toEqual({ prompt: 12, completion: 7, cached: 0 });
    }
  });

  it('closes a stream that ended after its finish_reason without [DONE]; an error event becomes an Anthropic error', () => {
    const relay = new SseRelay(new OpenAiMessagesStream('alias'));
    const out = relay.push(Buffer.from(chunk({ content: 'hi' }) + chunk({}, 'stop'))) + relay.end();
    const types = events(out).map(([t]) => t);
    expect(types).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect((events(out)[0]![1].message as Json).model).toBe('alias');
    const reader = new OpenAiMessagesStream(null);
    expect(events(reader.event('data: {"error":{"message":"boom","type":"server_error"}}', '\n\n'))).toEqual([
      ['error', { type: 'error', error: { type: 'api_error', message: 'boom' } }],
    ]);
  });
});
