import { describe, expect, it } from 'vitest';
import {
  attemptOutcome,
  breakerOutcome,
  failureOutcome,
  retryDecision,
  type AttemptContext,
} from './retry-table.js';

// One test per row of docs/relay.md "Outcomes, retries and errors" (the streaming row's decision is
// the stream's: see outcome.spec.ts), plus the table's edges: a second attempt is never retried, a
// client that has gone is answered 499, 1xx/3xx are never passed on.
const first: AttemptContext = { attempt: 1, clientGone: false, providerName: 'openai', timeoutMs: 30_000 };
const second: AttemptContext = { ...first, attempt: 2 };

describe('retry table (docs/relay.md)', () => {
  it('2xx → the answer', () => {
    for (const status of [200, 201, 204])
      expect(retryDecision({ status }, first)).toEqual({ action: 'respond' });
  });

  it('429 → one retry on another key, else 429 upstream_rate_limited with Retry-After and x-should-retry: true', () => {
    const d = retryDecision({ status: 429, retryAfter: '7' }, first);
    expect(d.action).toBe('retry');
    if (d.action === 'respond') throw new Error('expected a rejection');
    expect(d.rejection).toMatchObject({
      status: 429,
      type: 'rate_limit_error',
      code: 'upstream_rate_limited',
      headers: { 'retry-after': '7', 'x-should-retry': 'true' },
    });
    // without (or with a useless) Retry-After: 1 s
    for (const retryAfter of [undefined, 'soon', '0']) {
      const r = retryDecision({ status: 429, retryAfter }, second);
      expect(r).toMatchObject({ action: 'fail', rejection: { headers: { 'retry-after': '1' } } });
    }
  });

  it('401 / 403 → one retry on another key, else 502 upstream_credentials_rejected', () => {
    for (const status of [401, 403]) {
      expect(retryDecision({ status }, first)).toMatchObject({
        action: 'retry',
        rejection: { status: 502, type: 'upstream_error', code: 'upstream_credentials_rejected' },
      });
    }
  });

  it('5xx → one retry on another key, else 502 upstream_error with x-should-retry: true', () => {
    for (const status of [500, 502, 503, 529]) {
      expect(retryDecision({ status }, first)).toMatchObject({
        action: 'retry',
        rejection: {
          status: 502,
          type: 'upstream_error',
          code: 'upstream_error',
          message: `Provider openai answered ${status}`,
          headers: { 'x-should-retry': 'true' },
        },
      });
    }
  });

  it('connection error → one retry on another key, else 502 upstream_unreachable with x-should-retry: true', () => {
    for (const failure of ['connect', 'protocol'] as const) {
      expect(retryDecision({ failure }, first)).toMatchObject({
        action: 'retry',
        rejection: { status: 502, code: 'upstream_unreachable', headers: { 'x-should-retry': 'true' } },
      });
    }
    // an address the SSRF guard refused is a connection failure that says so
    expect(retryDecision({ failure: 'refused_address' }, first)).toMatchObject({
      action: 'retry',
      rejection: { status: 502, code: 'upstream_address_refused' },
    });
  });

  it('no answer within timeout_ms → not retried, 504 upstream_timeout_error', () => {
    expect(retryDecision({ failure: 'timeout' }, first)).toEqual({
      action: 'fail',
      rejection: {
        status: 504,
        type: 'upstream_timeout_error',
        code: 'upstream_timeout',
        message: 'Provider openai did not answer within 30000 ms',
        param: null,
        headers: { 'x-should-retry': 'true' },
      },
    });
  });

  it('other 4xx (400, 404, 422…) → passed on', () => {
    for (const status of [400, 404, 409, 413, 422])
      expect(retryDecision({ status }, first)).toEqual({ action: 'respond' });
  });

  it('a client request is never sent upstream more than twice: the second attempt fails instead of retrying', () => {
    for (const observed of [
      { status: 429 },
      { status: 401 },
      { status: 500 },
      { failure: 'connect' as const },
    ]) {
      expect(retryDecision(observed, first).action).toBe('retry');
      expect(retryDecision(observed, second).action).toBe('fail');
    }
  });

  it('1xx / 3xx are never passed on (no redirect reaches the client): retried, else 502 upstream_unexpected_status', () => {
    for (const status of [101, 301, 302, 307]) {
      expect(retryDecision({ status }, first)).toMatchObject({
        action: 'retry',
        rejection: {
          status: 502,
          code: 'upstream_unexpected_status',
          headers: { 'x-should-retry': 'false' },
        },
      });
    }
  });

  it('the client gone (or the request aborted) → 499, never retried', () => {
    expect(retryDecision({ failure: 'aborted' }, first)).toMatchObject({
      action: 'fail',
      rejection: { status: 499, code: 'client_closed_request' },
    });
    expect(retryDecision({ failure: 'connect' }, { ...first, clientGone: true })).toMatchObject({
      action: 'fail',
      rejection: { status: 499 },
    });
  });

  it('a transport failure reaches the key pool as connect / timeout / aborted / protocol', () => {
    expect(failureOutcome('refused_address')).toBe('connect');
    expect(failureOutcome('timeout')).toBe('timeout');
    expect(failureOutcome('aborted')).toBe('aborted');
    expect(failureOutcome('protocol')).toBe('protocol');
  });

  it('with a route: a timeout before the first byte moves on too, up to max_attempts; a 4xx never', () => {
    const routed = (attempt: number) => ({ ...first, attempt, routed: true, maxAttempts: 3 });
    for (const observed of [
      { failure: 'timeout' as const },
      { status: 429 },
      { status: 500 },
      { status: 503 },
      { failure: 'connect' as const },
    ]) {
      expect(retryDecision(observed, routed(1)).action).toBe('retry');
      expect(retryDecision(observed, routed(2)).action).toBe('retry');
      expect(retryDecision(observed, routed(3)).action).toBe('fail');
    }
    expect(retryDecision({ failure: 'timeout' }, routed(3))).toMatchObject({ rejection: { status: 504 } });
    for (const status of [400, 404, 422]) expect(retryDecision({ status }, routed(1)).action).toBe('respond');
    expect(retryDecision({ failure: 'aborted' }, routed(1)).action).toBe('fail');
    // without a route, a timeout is still not retried
    expect(retryDecision({ failure: 'timeout' }, first).action).toBe('fail');
  });

  it('classifies attempts for the attempt log and the breaker', () => {
    expect(attemptOutcome({ status: 200 })).toBe('ok');
    expect(attemptOutcome({ status: 429 })).toBe('rate_limited');
    expect(attemptOutcome({ status: 400 })).toBe('client_error');
    expect(attemptOutcome({ status: 401 })).toBe('upstream_error');
    expect(attemptOutcome({ status: 502 })).toBe('upstream_error');
    expect(attemptOutcome({ failure: 'timeout' })).toBe('timeout');
    expect(attemptOutcome({ failure: 'refused_address' })).toBe('connect_error');
    expect(attemptOutcome({ failure: 'aborted' })).toBe('canceled');
    expect(breakerOutcome({ status: 200 })).toBe('success');
    expect(breakerOutcome({ status: 500 })).toBe('failure');
    expect(breakerOutcome({ failure: 'timeout' })).toBe('failure');
    expect(breakerOutcome({ failure: 'connect' })).toBe('failure');
    expect(breakerOutcome({ status: 429 })).toBeNull();
    expect(breakerOutcome({ status: 400 })).toBeNull();
    expect(breakerOutcome({ failure: 'aborted' })).toBeNull();
  });

  it('Anthropic: 529 overloaded_error is a 5xx (retried on another key / target, then 502; a breaker failure); its 429 a 429', () => {
    expect(retryDecision({ status: 529 }, first).action).toBe('retry');
    expect(retryDecision({ status: 529 }, { ...first, attempt: 2 })).toMatchObject({
      action: 'fail',
      rejection: {
        status: 502,
        type: 'upstream_error',
        code: 'upstream_error',
        headers: { 'x-should-retry': 'true' },
      },
    });
    expect(
      retryDecision({ status: 529 }, { ...first, routed: true, maxAttempts: 3, attempt: 2 }).action,
    ).toBe('retry');
    expect(attemptOutcome({ status: 529 })).toBe('upstream_error');
    expect(breakerOutcome({ status: 529 })).toBe('failure');
    expect(retryDecision({ status: 429, retryAfter: '7' }, { ...first, attempt: 2 })).toMatchObject({
      rejection: { status: 429, type: 'rate_limit_error', headers: { 'retry-after': '7' } },
    });
  });
});
