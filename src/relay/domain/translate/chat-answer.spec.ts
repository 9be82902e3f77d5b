import { describe, expect, it } from 'vitest';
import { messagesClientError, messagesUsage, messageToChatCompletion } from './index.js';

const message = (extra: Record<string, unknown> = {}) => ({
  id: 'msg_01',
  type: 'message',
  role: 'assistant',
  model: 'claude-sonnet-4-20250514',
  content: [{ type: 'text', text: 'Hello!' }],
  stop_reason: 'end_turn',
  stop_sequence: null,
  usage: {
    input_tokens: 10,
    output_tokens: 5,
    cache_read_input_tokens: 100,
    cache_creation_input_tokens: 20,
  },
  ...extra,
});

describe('messageToChatCompletion', () => {
  it('answers a chat.completion: text, finish_reason, usage with cache reads as cached tokens', () => {
    const out = JSON.parse(messageToChatCompletion(JSON.stringify(message()), null, 1_700_000_000_500));
    expect(out).toEqual({
      id: 'msg_01',
      object: 'chat.completion',
      created: 1_700_000_000,
      model: 'claude-sonnet-4-20250514',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Hello!', refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      usage: {
        prompt_tokens: 130,
        completion_tokens: 5,
        total_tokens: 135,
        prompt_tokens_details: { cached_tokens: 100 },
      },
    });
  });

  it('names the alias of a routed request as the model', () => {
    expect(JSON.parse(messageToChatCompletion(JSON.stringify(message()), 'smart')).model).toBe('smart');
  });

  it('joins text blocks, turns tool_use blocks into tool_calls with JSON-string arguments, drops thinking', () => {
    const text = JSON.stringify(
      message({
        content: [
          { type: 'thinking', thinking: 'hmm', signature: 's' },
          { type: 'text', text: 'Checking ' },
          { type: 'text', text: 'both.' },
          { type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Paris' } },
          { type: 'tool_use', id: 'toolu_2', name: 'now', input: {} },
        ],
        stop_reason: 'tool_use',
      }),
    );
    const choice = JSON.parse(messageToChatCompletion(text, null)).choices[0];
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message).toEqual({
      role: 'assistant',
      content: 'Checking both.',
      refusal: null,
      tool_calls: [
        { id: 'toolu_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
        { id: 'toolu_2', type: 'function', function: { name: 'now', arguments: '{}' } },
      ],
    });
  });

  it('maps every stop_reason; content is null without text', () => {
    const finish = (stop_reason: unknown) =>
      JSON.parse(messageToChatCompletion(JSON.stringify(message({ stop_reason })), null)).choices[0]
        .finish_reason;
    expect(finish('end_turn')).toBe('stop');
    expect(finish('stop_sequence')).toBe('stop');
    expect(finish('max_tokens')).toBe('length');
    expect(finish('tool_use')).toBe('tool_calls');
    expect(finish('refusal')).toBe('content_filter');
    expect(finish(null)).toBe('stop');
    const empty = JSON.parse(messageToChatCompletion(JSON.stringify(message({ content: [] })), null));
    expect(empty.choices[0].message.content).toBeNull();
  });

  it('relays an answer that is not an Anthropic message as it came', () => {
    expect(messageToChatCompletion('not json', null)).toBe('not json');
    expect(messageToChatCompletion('{"x":1}', 'a')).toBe('{"x":1}');
  });
});

describe('messagesUsage', () => {
  it('counts every input token as prompt, cache reads as cached; none on errors', () => {
    expect(messagesUsage(JSON.stringify(message()))).toEqual({ prompt: 130, completion: 5, cached: 100 });
    expect(messagesUsage(JSON.stringify(message({ usage: { input_tokens: 3, output_tokens: 4 } })))).toEqual({
      prompt: 3,
      completion: 4,
      cached: 0,
    });
    expect(messagesUsage('{"type":"error","error":{"type":"invalid_request_error","message":"x"}}')).toEqual({
      prompt: 0,
      completion: 0,
      cached: 0,
    });
    expect(messagesUsage('oops')).toEqual({ prompt: 0, completion: 0, cached: 0 });
  });
});

describe('messagesClientError', () => {
  it('keeps the status and message, code = the Anthropic error type, the key redacted', () => {
    const body = JSON.stringify({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'max_tokens: 9999999 > 64000, key sk-ant-secret' },
      request_id: 'req_1',
    });
    expect(messagesClientError(400, body, 'sk-ant-secret')).toEqual({
      status: 400,
      type: 'invalid_request_error',
      code: 'invalid_request_error',
      message: 'max_tokens: 9999999 > 64000, key [redacted]',
      param: null,
      headers: { 'x-should-retry': 'false' },
    });
    const notFound = JSON.stringify({
      type: 'error',
      error: { type: 'not_found_error', message: 'model: claude-x' },
    });
    expect(messagesClientError(404, notFound, 'k')).toMatchObject({ status: 404, code: 'not_found_error' });
    expect(messagesClientError(422, '<html>', 'k')).toMatchObject({
      status: 422,
      code: 'upstream_rejected_request',
      message: 'Provider answered 422',
    });
  });
});
