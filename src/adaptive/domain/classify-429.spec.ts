import { describe, expect, it } from 'vitest';
import { retryAfterMs } from '../../common/upstream-headers.js';
import { classify429, type Classify429Input } from './classify-429.js';

const NOW = Date.parse('2025-11-22T10:00:00Z');
const base: Classify429Input = { inFlight: 2, limit: 8, longRetryAfterMs: 10_000, nowMs: NOW };

describe('classify429', () => {
  const table: [string, Partial<Classify429Input>, string, string][] = [
    [
      'provider says concurrency (fake provider / code)',
      {
        error: {
          message: 'Too many concurrent requests',
          type: 'requests',
          code: 'concurrency_limit_exceeded',
        },
      },
      'concurrency',
      'provider_says_concurrency',
    ],
    [
      'provider says parallel requests',
      { error: { message: 'Too many parallel requests for this key' } },
      'concurrency',
      'provider_says_concurrency',
    ],
    [
      'concurrency message wins over remaining=0',
      { error: { message: 'concurrent request limit' }, headers: { 'x-ratelimit-remaining-requests': '0' } },
      'concurrency',
      'provider_says_concurrency',
    ],
    [
      'remaining requests 0 → rpm',
      { headers: { 'X-RateLimit-Remaining-Requests': '0' }, inFlight: 8 },
      'rpm',
      'remaining_requests_zero',
    ],
    [
      'remaining tokens 0 → tpm',
      {
        headers: new Headers({ 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-remaining-requests': '12' }),
      },
      'tpm',
      'remaining_tokens_zero',
    ],
    [
      'OpenAI TPM message',
      {
        error: {
          message: 'Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29000',
          code: 'rate_limit_exceeded',
        },
      },
      'tpm',
      'provider_says_tokens',
    ],
    [
      'OpenAI RPM message',
      {
        error: {
          message: 'Rate limit reached for gpt-4o on requests per min (RPM): Limit 500',
          code: 'rate_limit_exceeded',
        },
      },
      'rpm',
      'provider_says_requests',
    ],
    [
      'quota',
      { error: { code: 'insufficient_quota', message: 'You exceeded your current quota' } },
      'rpm',
      'provider_says_requests',
    ],
    [
      'at the learned limit, no RPM/TPM signal → concurrency',
      { inFlight: 8, limit: 8 },
      'concurrency',
      'at_concurrency_limit',
    ],
    ['above the limit → concurrency', { inFlight: 9, limit: 8 }, 'concurrency', 'at_concurrency_limit'],
    [
      'at the limit but remaining-requests 0 → rpm',
      { inFlight: 8, limit: 8, headers: { 'x-ratelimit-remaining-requests': '0' } },
      'rpm',
      'remaining_requests_zero',
    ],
    [
      'long Retry-After, low in-flight → rpm',
      { inFlight: 1, headers: { 'retry-after': '30' } },
      'rpm',
      'long_retry_after',
    ],
    [
      'long retry-after-ms → rpm',
      { inFlight: 1, headers: { 'retry-after-ms': '20000' } },
      'rpm',
      'long_retry_after',
    ],
    [
      'long Retry-After as HTTP date → rpm',
      { headers: { 'retry-after': new Date(NOW + 60_000).toUTCString() } },
      'rpm',
      'long_retry_after',
    ],
    [
      'short Retry-After, below the limit → unknown',
      { headers: { 'retry-after': '1' } },
      'unknown',
      'no_signal',
    ],
    ['nothing at all → unknown', {}, 'unknown', 'no_signal'],
    ['no limit (none) and no signal → unknown', { limit: null, inFlight: 50 }, 'unknown', 'no_signal'],
    [
      'generic message without a kind → unknown',
      { error: { message: 'Please slow down', type: 'rate_limit_error' } },
      'unknown',
      'no_signal',
    ], // Anthropic: the error object of {"type":"error","error":{"type":"rate_limit_error","message":…}}
    // as the relay parses it (parseUpstreamJson(text).error), and its anthropic-ratelimit-* headers.
    [
      'Anthropic: requests remaining 0 → rpm',
      {
        error: { type: 'rate_limit_error', message: 'Rate limited' },
        headers: {
          'anthropic-ratelimit-requests-remaining': '0',
          'anthropic-ratelimit-tokens-remaining': '900',
        },
        inFlight: 8,
      },
      'rpm',
      'remaining_requests_zero',
    ],
    [
      'Anthropic: input tokens remaining 0 → tpm',
      {
        error: { type: 'rate_limit_error', message: 'Rate limited' },
        headers: {
          'anthropic-ratelimit-requests-remaining': '3',
          'anthropic-ratelimit-input-tokens-remaining': '0',
        },
      },
      'tpm',
      'remaining_tokens_zero',
    ],
    [
      'Anthropic: output tokens remaining 0 → tpm',
      { headers: { 'anthropic-ratelimit-output-tokens-remaining': '0' } },
      'tpm',
      'remaining_tokens_zero',
    ],
    [
      'Anthropic: its request-rate message → rpm',
      {
        error: {
          type: 'rate_limit_error',
          message: "This request would exceed your organization's rate limit of 50 requests per minute",
        },
      },
      'rpm',
      'provider_says_requests',
    ],
    [
      'Anthropic: its token-rate message → tpm',
      {
        error: {
          type: 'rate_limit_error',
          message:
            'This request would exceed the rate limit for your organization of 40,000 input tokens per minute',
        },
      },
      'tpm',
      'provider_says_tokens',
    ],
  ];
  it.each(table)('%s', (_name, input, type, signal) => {
    expect(classify429({ ...base, ...input })).toEqual({ type, signal });
  });

  it('reads Retry-After forms', () => {
    expect(retryAfterMs({ 'retry-after': '2.5' }, NOW)).toBe(2500);
    expect(retryAfterMs({ 'retry-after-ms': '120' }, NOW)).toBe(120);
    expect(retryAfterMs({ 'retry-after': 'soon' }, NOW)).toBeNull();
    expect(retryAfterMs(undefined, NOW)).toBeNull();
  });
});
