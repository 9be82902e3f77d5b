import { describe, expect, it } from 'vitest';
import { AnthropicStreamEvents, anthropicUsage } from './anthropic-exchange.js';
import { exchangeFor } from './exchange.js';
import { SseRelay } from './sse-relay.js';

const messages = exchangeFor('messages', 'anthropic')!;

const answer = JSON.stringify({
  id: 'msg_1',
  type: 'message',
  role: 'assistant',
  model: 'claude-sonnet-4-5',
  content: [{ type: 'text', text: 'Hi there' }],
  stop_reason: 'end_turn',
  stop_sequence: null,
  usage: {
    input_tokens: 10,
    cache_creation_input_tokens: 20,
    cache_read_input_tokens: 30,
    output_tokens: 7,
  },
});

const ev = (type: string, data: Record<string, unknown>) =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

const stream = [
  ev('message_start', {
    message: {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [],
      usage: {
        input_tokens: 10,
        cache_creation_input_tokens: 20,
        cache_read_input_tokens: 30,
        output_tokens: 1,
      },
    },
  }),
  ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
  ev('ping', {}),
  ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hello' } }),
  ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: ' world' } }),
  ev('content_block_stop', { index: 0 }),
  ev('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 5 } }),
  ev('message_delta', { delta: {}, usage: { output_tokens: 9 } }),
  ev('message_stop', {}),
].join('');

describe('anthropic:messages exchange', () => {
  it('is the ANTHROPIC table’s messages entry: /messages (openai providers translate it: openai:messages)', () => {
    expect(messages.name).toBe('anthropic:messages');
    expect(messages.path).toBe('/messages');
    expect(exchangeFor('messages', 'openai')?.name).toBe('openai:messages');
  });

  it('sends the client’s raw body unchanged, streams without injected usage', () => {
    const raw = '{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"n":1.00}';
    const body = JSON.parse(raw) as Record<string, unknown>;
    expect(messages.payload(body, false, raw)).toEqual({
      ok: true,
      value: { payload: raw, injectedUsage: false },
    });
    const streamed = messages.payload({ ...body, stream: true }, true);
    expect(streamed.ok && JSON.parse(streamed.value.payload)).toEqual({ ...body, stream: true });
    expect(streamed.ok && streamed.value.injectedUsage).toBe(false);
  });

  it('reads JSON usage: prompt = input + cache reads + cache writes, cached = cache reads', () => {
    expect(messages.usage(answer)).toEqual({ prompt: 60, completion: 7, cached: 30 });
    expect(anthropicUsage({ input_tokens: 3, output_tokens: 2 })).toEqual({
      prompt: 3,
      completion: 2,
      cached: 0,
    });
    expect(messages.usage('not json')).toEqual({ prompt: 0, completion: 0, cached: 0 });
    expect(anthropicUsage({ input_tokens: -1, output_tokens: 'x' })).toEqual({
      prompt: 0,
      completion: 0,
      cached: 0,
    });
  });

  it('answers unchanged without a route, with the alias as model with one', () => {
    expect(messages.answer(answer, null)).toBe(answer);
    expect(JSON.parse(messages.answer(answer, 'smart')).model).toBe('smart');
  });

  it('ends a stream cut upstream with an Anthropic error event (event: error), the openai exchanges with their own', () => {
    const event = messages.interrupted!('req-9');
    expect(event).toBe(
      'event: error\ndata: {"type":"error","error":{"type":"upstream_error","code":"upstream_stream_interrupted","message":"The upstream stream ended unexpectedly","param":null,"request_id":"req-9"}}\n\n',
    );
    expect(exchangeFor('chat', 'openai')!.interrupted).toBeUndefined();
  });

  it('keeps Anthropic’s words in a client error (its error type as code), never the upstream key', () => {
    const text = JSON.stringify({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'max_tokens: 0 is too small for key sk-ant-secret' },
    });
    expect(messages.clientError(400, text, 'sk-ant-secret')).toEqual({
      status: 400,
      type: 'invalid_request_error',
      code: 'invalid_request_error',
      message: 'max_tokens: 0 is too small for key [redacted]',
      param: null,
      headers: { 'x-should-retry': 'false' },
    });
    expect(messages.clientError(404, 'oops', 'k')).toMatchObject({
      status: 404,
      code: 'upstream_rejected_request',
      message: 'Provider answered 404',
    });
  });
});

describe('AnthropicStreamEvents', () => {
  it('passes every event through unchanged (event: lines included) and reads usage and delivered text', () => {
    const relay = new SseRelay(messages.stream(false, null));
    const out = relay.push(Buffer.from(stream)) + relay.end();
    expect(out).toBe(stream);
    // message_start's counts, then message_delta's cumulative output (the last one wins)
    expect(relay.usage).toEqual({ prompt: 60, completion: 9, cached: 30 });
    expect(relay.completionTokens()).toBe(9);
    expect(relay.reader.deliveredChars).toBe('Hello world'.length);
  });

  it('reads usage across chunks split anywhere', () => {
    const reader = new AnthropicStreamEvents();
    const relay = new SseRelay(reader);
    let out = '';
    for (let i = 0; i < stream.length; i += 7) out += relay.push(Buffer.from(stream.slice(i, i + 7)));
    out += relay.end();
    expect(out).toBe(stream);
    expect(reader.usage).toEqual({ prompt: 60, completion: 9, cached: 30 });
  });

  it('has no usage before message_start; a stream cut after deltas is estimated from delivered chars', () => {
    const relay = new SseRelay(new AnthropicStreamEvents());
    relay.push(
      Buffer.from(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'abcdefgh' } })),
    );
    expect(relay.usage).toBeNull();
    expect(relay.completionTokens()).toBe(2);
  });

  it('counts tool input and thinking deltas as delivered output', () => {
    const reader = new AnthropicStreamEvents();
    reader.event(
      `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"q":' } })}`,
      '\n\n',
    );
    reader.event(
      `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'hmm' } })}`,
      '\n\n',
    );
    expect(reader.deliveredChars).toBe(8);
  });

  it('a routed stream shows the alias as message_start’s message.model, the event: line kept', () => {
    const relay = new SseRelay(messages.stream(false, 'smart'));
    const out = relay.push(Buffer.from(stream)) + relay.end();
    const first = out.split('\n\n')[0]!;
    expect(first.split('\n')[0]).toBe('event: message_start');
    expect(JSON.parse(first.split('\n')[1]!.slice(6)).message.model).toBe('smart');
    // everything after message_start unchanged
    expect(out.slice(first.length)).toBe(stream.slice(stream.indexOf('\n\n')));
  });
});
