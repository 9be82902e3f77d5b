import { describe, expect, it } from 'vitest';
import { appendMember, upstreamPayload, validateBody, wantsStream } from './validation.js';

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

describe('request validation', () => {
  it('accepts a minimal body per endpoint and passes unknown fields through', () => {
    expect(validateBody('chat', { ...chat, seed: 1 })).toEqual({ ok: true, value: { ...chat, seed: 1 } });
    expect(validateBody('completions', { model: 'm', prompt: ['a'] }).ok).toBe(true);
    expect(validateBody('embeddings', { model: 'm', input: 'x' }).ok).toBe(true);
  });

  it('a body that is not an object → 400 invalid_body', () => {
    for (const body of [null, [], 'x', 3]) {
      expect(validateBody('chat', body)).toMatchObject({
        ok: false,
        rejection: { status: 400, code: 'invalid_body' },
      });
    }
  });

  it('every problem in one message, the first one as param', () => {
    const v = validateBody('chat', { model: '', messages: [], stream: 'yes' });
    expect(v).toMatchObject({ ok: false, rejection: { code: 'validation_failed', param: 'model' } });
    if (!v.ok)
      expect(v.rejection.message).toBe(
        'model must be a non-empty string; messages must be a non-empty array; stream must be a boolean',
      );
  });

  it('a model the request log could not store (NUL, lone surrogate) or longer than 256 → 400 on model', () => {
    for (const model of ['a\u0000b', 'a\ud800', 'x'.repeat(257)]) {
      expect(validateBody('chat', { ...chat, model })).toMatchObject({
        ok: false,
        rejection: { param: 'model' },
      });
    }
  });

  it('messages of non-objects, prompt / input missing', () => {
    expect(validateBody('chat', { model: 'm', messages: ['hi'] })).toMatchObject({
      ok: false,
      rejection: { param: 'messages' },
    });
    expect(validateBody('completions', { model: 'm' })).toMatchObject({
      ok: false,
      rejection: { param: 'prompt' },
    });
    expect(validateBody('embeddings', { model: 'm', input: 3 })).toMatchObject({
      ok: false,
      rejection: { param: 'input' },
    });
  });

  it('streams: never for embeddings; usage asked for on the client’s behalf unless it did', () => {
    expect(wantsStream('embeddings', { stream: true })).toBe(false);
    expect(wantsStream('chat', { stream: true })).toBe(true);
    expect(upstreamPayload({ ...chat, stream: true }, true)).toEqual({
      ok: true,
      value: {
        payload: JSON.stringify({ ...chat, stream: true, stream_options: { include_usage: true } }),
        injectedUsage: true,
      },
    });
    const asked = { ...chat, stream: true, stream_options: { include_usage: true } };
    expect(upstreamPayload(asked, true)).toEqual({
      ok: true,
      value: { payload: JSON.stringify(asked), injectedUsage: false },
    });
    expect(upstreamPayload({ ...chat, stream_options: 'x' }, true)).toMatchObject({
      ok: false,
      rejection: { status: 400, param: 'stream_options' },
    });
    expect(upstreamPayload(chat, false)).toEqual({
      ok: true,
      value: { payload: JSON.stringify(chat), injectedUsage: false },
    });
  });

  it('sends the client’s JSON text as it came when the body goes upstream unchanged', () => {
    const raw =
      '{ "model": "gpt-4o-mini", "messages": [{"role":"user","content":"hi"}], "seed": 12345678901234567890 }';
    const body = JSON.parse(raw) as Record<string, unknown>;
    expect(upstreamPayload(body, false, raw)).toEqual({
      ok: true,
      value: { payload: raw, injectedUsage: false },
    });
    const asked = '{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}';
    expect(upstreamPayload(JSON.parse(asked) as Record<string, unknown>, true, asked)).toEqual({
      ok: true,
      value: { payload: asked, injectedUsage: false },
    });
    // A stream that needs usage asked for: the client's text with the option appended (not a
    // second serialisation: its numbers stay exact).
    const plain = '{ "model":"m","messages":[],"stream":true, "seed": 12345678901234567890 }\n';
    const injected = upstreamPayload(JSON.parse(plain) as Record<string, unknown>, true, plain);
    expect(injected).toEqual({
      ok: true,
      value: {
        payload:
          '{ "model":"m","messages":[],"stream":true, "seed": 12345678901234567890 ,"stream_options":{"include_usage":true}}',
        injectedUsage: true,
      },
    });
    expect(JSON.parse((injected as { value: { payload: string } }).value.payload)).toMatchObject({
      model: 'm',
      stream: true,
      stream_options: { include_usage: true },
    });
    // stream_options the client sent (without include_usage, or null): re-serialised with it set.
    const own = '{"model":"m","messages":[],"stream":true,"stream_options":{"x":1}}';
    expect(upstreamPayload(JSON.parse(own) as Record<string, unknown>, true, own)).toEqual({
      ok: true,
      value: {
        payload: JSON.stringify({
          model: 'm',
          messages: [],
          stream: true,
          stream_options: { x: 1, include_usage: true },
        }),
        injectedUsage: true,
      },
    });
    const nul = '{"model":"m","messages":[],"stream":true,"stream_options":null}';
    expect(upstreamPayload(JSON.parse(nul) as Record<string, unknown>, true, nul)).toMatchObject({
      value: { payload: '{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}' },
    });
  });

  it('appendMember: one more member before the closing brace', () => {
    expect(appendMember('{"a":1}', '"b":2')).toBe('{"a":1,"b":2}');
    expect(appendMember(' { "a" : 1 } \r\n', '"b":2')).toBe(' { "a" : 1 ,"b":2}');
    expect(appendMember('{}', '"b":2')).toBe('{"b":2}');
    expect(appendMember('{ \n}', '"b":2')).toBe('{ \n"b":2}');
    expect(appendMember('[1]', '"b":2')).toBeNull();
    expect(appendMember('}', '"b":2')).toBeNull();
    expect(appendMember('', '"b":2')).toBeNull();
  });
});
