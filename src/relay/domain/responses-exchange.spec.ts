import { describe, expect, it } from 'vitest';
import { exchangeFor } from './exchange.js';
import {
  responseIdOf,
  responsesExchange,
  responsesUsage,
  ResponsesStreamEvents,
} from './responses-exchange.js';
import { SseRelay } from './sse-relay.js';
import { validateBody } from './validation.js';

const usage = {
  input_tokens: 36,
  input_tokens_details: { cached_tokens: 12 },
  output_tokens: 87,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: 123,
};
const answer = JSON.stringify({
  id: 'resp_1',
  object: 'response',
  model: 'gpt-4o-mini-2024-07-18',
  output: [{ type: 'message', content: [{ type: 'output_text', text: 'Hi' }] }],
  usage,
  user: null,
  metadata: {},
});

const ev = (type: string, data: Record<string, unknown>) =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
const created = ev('response.created', {
  sequence_number: 0,
  response: { id: 'resp_9', model: 'upstream-model', status: 'in_progress', usage: null },
});
const delta = (d: string) => ev('response.output_text.delta', { item_id: 'msg_1', delta: d });
const completed = ev('response.completed', {
  response: { id: 'resp_9', model: 'upstream-model', status: 'completed', usage },
});

describe('openai:responses exchange', () => {
  it('is the OpenAI kind’s exchange for responses, on /responses', () => {
    expect(exchangeFor('responses', 'openai')).toBe(responsesExchange);
    expect(responsesExchange.name).toBe('openai:responses');
    expect(responsesExchange.path).toBe('/responses');
  });

  it('sends the client’s raw body unchanged, streams included (no stream_options injected)', () => {
    const raw = '{"model":"m","input":"hi","stream":true,"n":1.0}';
    expect(responsesExchange.payload({ model: 'm', input: 'hi', stream: true }, true, raw)).toEqual({
      ok: true,
      value: { payload: raw, injectedUsage: false },
    });
    // a routed request (no raw: its model was replaced) is serialised as is
    const v = responsesExchange.payload({ model: 'target', input: 'hi', stream: true }, true);
    expect(v.ok && JSON.parse(v.value.payload)).toEqual({ model: 'target', input: 'hi', stream: true });
  });

  it('reads input/output/cached tokens from a JSON answer', () => {
    expect(responsesExchange.usage(answer)).toEqual({ prompt: 36, completion: 87, cached: 12 });
    expect(responsesExchange.usage('not json')).toEqual({ prompt: 0, completion: 0, cached: 0 });
    expect(responsesUsage({ input_tokens: -1, output_tokens: 'x', input_tokens_details: null })).toEqual({
      prompt: 0,
      completion: 0,
      cached: 0,
    });
  });

  it('shows a route’s alias as model in the JSON answer, and the answer as it came without one', () => {
    expect(responsesExchange.answer(answer, null)).toBe(answer);
    expect(JSON.parse(responsesExchange.answer(answer, 'smart')).model).toBe('smart');
  });

  it('knows the id a JSON answer created', () => {
    expect(responsesExchange.createdId!(answer)).toBe('resp_1');
    expect(responseIdOf('{"object":"response"}')).toBeNull();
    expect(responseIdOf('[1]')).toBeNull();
    expect(responseIdOf('nope')).toBeNull();
    expect(responseIdOf(JSON.stringify({ id: 'has space' }))).toBeNull();
  });

  it('keeps the upstream’s error words in the one error shape, never its credential', () => {
    const r = responsesExchange.clientError(
      400,
      JSON.stringify({ error: { message: 'bad key sk-secret', param: 'input', code: 'invalid_value' } }),
      'sk-secret',
    );
    expect(r).toMatchObject({
      status: 400,
      code: 'invalid_value',
      param: 'input',
      message: 'bad key [redacted]',
    });
  });
});

describe('Responses stream events', () => {
  it('pass through unchanged, with the created id, delivered text and the completed event’s usage', () => {
    const relay = new SseRelay(responsesExchange.stream(false, null));
    const all = created + delta('Hel') + delta('lo') + completed;
    expect(relay.push(Buffer.from(all.slice(0, 30)))).toBe('');
    expect(relay.push(Buffer.from(all.slice(30)))).toBe(all);
    const reader = relay.reader as ResponsesStreamEvents;
    expect(reader.createdId).toBe('resp_9');
    expect(reader.deliveredChars).toBe(5);
    expect(relay.usage).toEqual({ prompt: 36, completion: 87, cached: 12 });
  });

  it('a cut stream (no completed event) is charged an estimate from the delivered text', () => {
    const relay = new SseRelay(new ResponsesStreamEvents());
    relay.push(Buffer.from(created + delta('12345678')));
    expect(relay.usage).toBeNull();
    expect(relay.completionTokens()).toBe(2);
  });

  it('reads usage from response.incomplete and response.failed too', () => {
    for (const type of ['response.incomplete', 'response.failed']) {
      const relay = new SseRelay(new ResponsesStreamEvents());
      relay.push(
        Buffer.from(ev(type, { response: { id: 'r', usage: { input_tokens: 3, output_tokens: 4 } } })),
      );
      expect(relay.usage).toEqual({ prompt: 3, completion: 4, cached: 0 });
    }
    // usage on another event is not the stream's usage
    const relay = new SseRelay(new ResponsesStreamEvents());
    relay.push(
      Buffer.from(ev('response.in_progress', { response: { id: 'r', usage: { input_tokens: 3 } } })),
    );
    expect(relay.usage).toBeNull();
  });

  it('a routed stream shows the alias as response.model, the event: line kept', () => {
    const relay = new SseRelay(new ResponsesStreamEvents('smart'));
    const out = relay.push(Buffer.from(created + delta('a') + completed));
    const events = out.split('\n\n').filter(Boolean);
    expect(events).toHaveLength(3);
    expect(events[0]!.split('\n')[0]).toBe('event: response.created');
    expect(JSON.parse(events[0]!.split('\n')[1]!.slice(6)).response.model).toBe('smart');
    expect(events[1]).toBe(delta('a').trimEnd());
    expect(JSON.parse(events[2]!.split('\n')[1]!.slice(6)).response).toMatchObject({ model: 'smart', usage });
  });

  it('comments and non-JSON data pass untouched', () => {
    const relay = new SseRelay(new ResponsesStreamEvents('smart'));
    expect(relay.push(Buffer.from(': keep-alive\n\ndata: [DONE]\n\n'))).toBe(
      ': keep-alive\n\ndata: [DONE]\n\n',
    );
  });
});

describe('Responses API validation', () => {
  it('model required; input a string or an array when present; stream a boolean', () => {
    expect(validateBody('responses', { model: 'm', input: 'hi' }).ok).toBe(true);
    expect(validateBody('responses', { model: 'm', input: [{ role: 'user', content: 'hi' }] }).ok).toBe(true);
    expect(validateBody('responses', { model: 'm', previous_response_id: 'resp_1' }).ok).toBe(true);
    expect(validateBody('responses', { input: 'hi' })).toMatchObject({
      ok: false,
      rejection: { param: 'model' },
    });
    expect(validateBody('responses', { model: 'm', input: 3 })).toMatchObject({
      ok: false,
      rejection: { status: 400, param: 'input', message: 'input must be a string or an array' },
    });
    expect(validateBody('responses', { model: 'm', input: 'x', stream: 'yes' })).toMatchObject({
      ok: false,
      rejection: { param: 'stream' },
    });
    expect(validateBody('responses', { model: 'm', previous_response_id: 7 })).toMatchObject({
      ok: false,
      rejection: { param: 'previous_response_id' },
    });
    expect(validateBody('responses', { model: 'm', max_output_tokens: 0 })).toMatchObject({
      ok: false,
      rejection: { param: 'max_output_tokens' },
    });
  });
});
