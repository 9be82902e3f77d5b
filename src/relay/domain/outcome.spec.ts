import { describe, expect, it } from 'vitest';
import type { KeyRefusal } from '../../key-pool/key-pool.types.js';
import { hopelessRefusal, queuePlan, refusalRejection } from './admission-rules.js';
import {
  outcomeOf,
  parseUpstreamJson,
  streamInterruptedEvent,
  streamKeyOutcome,
  upstreamClientError,
  upstreamUsage,
} from './outcome.js';

const refusal = (kind: KeyRefusal['kind'], retryAfterMs: number): KeyRefusal => ({
  kind,
  code: kind === 'no_usable_keys' ? 'no_usable_upstream_keys' : `upstream_keys_${kind}`,
  message: 'm',
  retryAfterMs,
  providerId: 'p',
  keys: { usable: 1, cooling: 0, rateLimited: 0, saturated: 0 },
});

describe('outcomes', () => {
  it('the outcome label keeps the three 503s apart', () => {
    expect(outcomeOf(503, 'queue_full_error', 'queue_full')).toBe('queue_full');
    expect(outcomeOf(503, 'service_unavailable_error', 'no_usable_upstream_keys')).toBe('no_usable_keys');
    expect(outcomeOf(503, 'service_unavailable_error', 'dependency_unavailable')).toBe(
      'dependency_unavailable',
    );
    expect(outcomeOf(503, 'service_unavailable_error', 'other')).toBe('unavailable');
    expect(outcomeOf(429, 'rate_limit_error', 'x')).toBe('rate_limited');
    expect(outcomeOf(504, 'upstream_timeout_error', 'x')).toBe('upstream_timeout');
    expect(outcomeOf(502, 'upstream_error', 'x')).toBe('upstream_error');
    expect(outcomeOf(499, 'invalid_request_error', 'client_closed_request')).toBe('canceled');
    expect(outcomeOf(500, 'internal_error', 'x')).toBe('error');
    expect(outcomeOf(404, 'invalid_request_error', 'x')).toBe('client_error');
  });

  it('an upstream 4xx is passed on in the one error shape, its credential redacted', () => {
    const r = upstreamClientError(
      400,
      { error: { message: 'bad key sk-123 here', code: 'bad', param: 'x' } },
      'sk-123',
    );
    expect(r).toEqual({
      status: 400,
      type: 'invalid_request_error',
      code: 'bad',
      message: 'bad key [redacted] here',
      param: 'x',
      headers: { 'x-should-retry': 'false' },
    });
    expect(upstreamClientError(422, null, 'k')).toMatchObject({
      code: 'upstream_rejected_request',
      message: 'Provider answered 422',
    });
  });

  it('stream interrupted after it started → a final error event; KeyPool hears how it ended', () => {
    expect(streamInterruptedEvent('r1')).toBe(
      'data: {"error":{"type":"upstream_error","code":"upstream_stream_interrupted","message":"The upstream stream ended unexpectedly","param":null,"request_id":"r1"}}\n\n',
    );
    expect(streamKeyOutcome(null, false, 5)).toEqual({ status: 200, error: undefined, tokens: 5 });
    expect(streamKeyOutcome('connect', false, 5)).toEqual({ status: undefined, error: 'connect', tokens: 5 });
    expect(streamKeyOutcome('aborted', true, 5)).toEqual({ status: 200, error: 'aborted', tokens: 5 });
  });
});

describe('admission rules', () => {
  it('no usable keys → 503 at once; cooling / RPM longer than the wait → 429 at once; else wait', () => {
    expect(hopelessRefusal(refusal('no_usable_keys', 0), 30_000)).toMatchObject({
      status: 503,
      headers: { 'retry-after': '30', 'x-should-retry': 'false' },
    });
    expect(hopelessRefusal(refusal('cooling', 60_000), 30_000)).toMatchObject({
      status: 429,
      headers: { 'retry-after': '60' },
    });
    expect(hopelessRefusal(refusal('rate_limited', 10_000), 30_000)).toBeNull();
    expect(hopelessRefusal(refusal('saturated', 60_000), 30_000)).toBeNull();
    expect(refusalRejection(refusal('saturated', 200))).toMatchObject({
      status: 429,
      headers: { 'retry-after': '1' },
    });
  });

  it('queue full → QUEUE_FULL_POLICY', () => {
    expect(queuePlan(999, 1000, 'reject', 'p')).toEqual({ kind: 'queue' });
    expect(queuePlan(1000, 1000, 'passthrough', 'p')).toEqual({ kind: 'passthrough' });
    expect(queuePlan(1000, 1000, 'reject', 'p')).toMatchObject({
      kind: 'reject',
      rejection: {
        status: 503,
        type: 'queue_full_error',
        code: 'queue_full',
        headers: { 'retry-after': '2' },
      },
    });
  });
});

describe('upstreamUsage (usage of a whole answer without parsing all of it)', () => {
  const cases: [string, string][] = [
    [
      'usage last',
      '{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}',
    ],
    [
      'whitespace and nested details',
      '{ "data": [0.1, -2e-3],\n  "usage" : { "prompt_tokens": 7, "prompt_tokens_details": {"cached_tokens": 2} }\n}\n',
    ],
    [
      'members after usage',
      '{"usage":{"prompt_tokens":1,"completion_tokens":2},"system_fingerprint":"fp","x":[1,{"a":"}"}]}',
    ],
    [
      'a nested usage after the top-level one',
      '{"usage":{"prompt_tokens":1},"x_groq":{"usage":{"prompt_tokens":99}}}',
    ],
    ['a nested usage only', '{"choices":[],"x_groq":{"usage":{"prompt_tokens":99}}}'],
    [
      'usage named inside strings',
      '{"content":"\\"usage\\": {\\"prompt_tokens\\": 9}}","usage":{"prompt_tokens":4}}',
    ],
    [
      'a key ending in an escaped quote',
      '{"say \\"usage":{"prompt_tokens":9},"usage":{"prompt_tokens":4},"z":1}',
    ],
    ['duplicate top-level usage', '{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}'],
    ['usage null', '{"usage":null}'],
    ['usage a number', '{"usage":5}'],
    ['no usage', '{"id":"x"}'],
    ['an array', '[{"usage":{"prompt_tokens":1}}]'],
    ['braces in strings after usage', '{"usage":{"prompt_tokens":1},"note":"}}]]{{"}'],
    ['not JSON', 'upstream said no'],
  ];
  for (const [name, text] of cases) {
    it(`${name}: the same as parsing the whole answer`, () => {
      expect(upstreamUsage(text)).toEqual(parseUpstreamJson(text)?.usage);
    });
  }

  it('reads the usage of an answer too long to parse for it', () => {
    const floats = Array.from({ length: 3000 }, (_, i) => (i / 7).toFixed(6)).join(',');
    const text = `{"object":"list","data":[{"embedding":[${floats}]}],"usage":{"prompt_tokens":12,"total_tokens":12}}`;
    expect(upstreamUsage(text)).toEqual({ prompt_tokens: 12, total_tokens: 12 });
  });
});
