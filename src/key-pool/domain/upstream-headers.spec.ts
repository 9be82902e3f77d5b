import { describe, expect, it } from 'vitest';
import { headerValue, parseOpenAiDuration, parseRetryAfter } from '../../common/upstream-headers.js';
import { cooldownFor429 } from './upstream-headers.js';

const NOW = Date.parse('2025-11-22T10:00:00.000Z');
const POLICY = { defaultMs: 60_000, maxMs: 300_000 };

describe('parseRetryAfter', () => {
  it.each([
    ['0', 0],
    ['3', 3000],
    [' 12 ', 12_000],
    ['1.5', 1500],
    ['Sat, 22 Nov 2025 10:00:30 GMT', 30_000], // IMF-fixdate
    ['Saturday, 22-Nov-25 10:01:00 GMT', 60_000], // RFC 850
    ['Sat, 22 Nov 2025 09:59:00 GMT', 0], // in the past
  ])('%j → %d ms', (value, ms) => {
    expect(parseRetryAfter(value, NOW)).toBe(ms);
  });

  it.each([undefined, '', '-1', 'soon', '1e3', '12abc'])('%j → null', (value) => {
    expect(parseRetryAfter(value, NOW)).toBeNull();
  });
});

describe('parseOpenAiDuration', () => {
  it.each([
    ['1s', 1000],
    ['20ms', 20],
    ['6m0s', 360_000],
    ['1h2m3.5s', 3_723_500],
    ['0.5s', 500],
    ['1m30.25s', 90_250],
    ['250us', 1], // rounded up to a whole ms
    ['7', 7000], // bare number: seconds
  ])('%j → %d ms', (value, ms) => {
    expect(parseOpenAiDuration(value)).toBe(ms);
  });

  it.each([undefined, '', 's', '1x', '1s junk', '-1s', 'ms'])('%j → null', (value) => {
    expect(parseOpenAiDuration(value)).toBeNull();
  });
});

describe('cooldownFor429', () => {
  it('Retry-After wins, floored at 1 s and capped', () => {
    expect(cooldownFor429({ 'Retry-After': '3' }, NOW, POLICY)).toEqual({ ms: 3000, source: 'retry-after' });
    expect(cooldownFor429({ 'retry-after': '0' }, NOW, POLICY)).toEqual({ ms: 1000, source: 'retry-after' });
    expect(cooldownFor429({ 'retry-after': '3600' }, NOW, POLICY)).toEqual({
      ms: 300_000,
      source: 'retry-after',
    });
    expect(cooldownFor429({ 'retry-after': 'Sat, 22 Nov 2025 10:00:12 GMT' }, NOW, POLICY)).toEqual({
      ms: 12_000,
      source: 'retry-after',
    });
  });

  it('Anthropic: retry-after wins; without it the exhausted budget’s anthropic-ratelimit-*-reset, else the latest', () => {
    const at = (s: number) => new Date(NOW + s * 1000).toISOString();
    expect(
      cooldownFor429(
        {
          'retry-after': '4',
          'anthropic-ratelimit-requests-reset': at(30),
          'anthropic-ratelimit-requests-remaining': '0',
        },
        NOW,
        POLICY,
      ),
    ).toEqual({ ms: 4000, source: 'retry-after' });
    expect(
      cooldownFor429(
        {
          'anthropic-ratelimit-requests-remaining': '0',
          'anthropic-ratelimit-requests-reset': at(7),
          'anthropic-ratelimit-tokens-remaining': '500',
          'anthropic-ratelimit-tokens-reset': at(50),
        },
        NOW,
        POLICY,
      ),
    ).toEqual({ ms: 7000, source: 'anthropic-ratelimit-reset' });
    expect(
      cooldownFor429(
        { 'anthropic-ratelimit-requests-reset': at(7), 'anthropic-ratelimit-output-tokens-reset': at(12) },
        NOW,
        POLICY,
      ),
    ).toEqual({ ms: 12_000, source: 'anthropic-ratelimit-reset' });
    expect(cooldownFor429({ 'anthropic-ratelimit-requests-reset': 'soon' }, NOW, POLICY).source).toBe(
      'default',
    );
  });

  it('retry-after-ms beats Retry-After', () => {
    expect(cooldownFor429({ 'retry-after-ms': '2500', 'retry-after': '9' }, NOW, POLICY)).toEqual({
      ms: 2500,
      source: 'retry-after-ms',
    });
  });

  it('x-ratelimit-reset-*: the exhausted budget decides, else the longer', () => {
    const both = { 'x-ratelimit-reset-requests': '2s', 'x-ratelimit-reset-tokens': '6m0s' };
    expect(cooldownFor429(both, NOW, POLICY)).toEqual({ ms: 300_000, source: 'x-ratelimit-reset-tokens' }); // capped 360 s → 300 s
    expect(
      cooldownFor429(
        { ...both, 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-remaining-tokens': '1200' },
        NOW,
        POLICY,
      ),
    ).toEqual({
      ms: 2000,
      source: 'x-ratelimit-reset-requests',
    });
    expect(
      cooldownFor429(
        { 'x-ratelimit-reset-tokens': '20ms', 'x-ratelimit-remaining-tokens': '0' },
        NOW,
        POLICY,
      ),
    ).toEqual({
      ms: 1000,
      source: 'x-ratelimit-reset-tokens',
    });
  });

  it('default when nothing usable is announced', () => {
    expect(cooldownFor429({}, NOW, POLICY)).toEqual({ ms: 60_000, source: 'default' });
    expect(cooldownFor429(undefined, NOW, POLICY)).toEqual({ ms: 60_000, source: 'default' });
    expect(
      cooldownFor429({ 'retry-after': 'later', 'x-ratelimit-reset-requests': 'soon' }, NOW, POLICY),
    ).toEqual({ ms: 60_000, source: 'default' });
  });

  it('reads WHATWG Headers and header arrays', () => {
    expect(cooldownFor429(new Headers({ 'Retry-After': '5' }), NOW, POLICY).ms).toBe(5000);
    expect(headerValue({ 'retry-after': ['7', '8'] }, 'Retry-After')).toBe('7');
  });
});
