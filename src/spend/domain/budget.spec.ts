import { describe, expect, it } from 'vitest';
import {
  budgetAdmits,
  currentPeriodIds,
  parseBudgetSubject,
  budgetRetryAfterSeconds,
  estimatePromptTokens,
  maxOutputTokens,
  periodBounds,
  periodId,
  reachedThresholds,
  settlementDelta,
  worstCaseMicros,
} from './budget.js';

const at = (iso: string): number => Date.parse(iso);

describe('budget periods (UTC calendar)', () => {
  it('day: the UTC day, whatever the instance zone', () => {
    const b = periodBounds('day', at('2026-12-06T23:59:59.999Z'));
    expect(b).toEqual({ startMs: at('2026-12-06T00:00:00Z'), endMs: at('2026-12-07T00:00:00Z') });
    expect(periodId('day', at('2026-12-06T00:00:00Z'))).toBe('d2026-12-06');
  });

  it('week: ISO week, Monday 00:00 UTC to the next Monday', () => {
    // 2026-12-06 is a Sunday: its week started Monday 2026-11-30
    const b = periodBounds('week', at('2026-12-06T12:00:00Z'));
    expect(b).toEqual({ startMs: at('2026-11-30T00:00:00Z'), endMs: at('2026-12-07T00:00:00Z') });
    expect(periodBounds('week', at('2026-12-07T00:00:00Z')).startMs).toBe(at('2026-12-07T00:00:00Z'));
    expect(periodId('week', at('2026-12-03T05:00:00Z'))).toBe('w2026-11-30');
    // a Thursday (the epoch's weekday) and a week across a year end
    expect(periodBounds('week', at('1970-01-01T00:00:00Z')).startMs).toBe(at('1969-12-29T00:00:00Z'));
    expect(periodId('week', at('2027-01-01T10:00:00Z'))).toBe('w2026-12-28');
  });

  it('month: the UTC calendar month (28 to 31 days)', () => {
    expect(periodBounds('month', at('2028-02-29T23:00:00Z'))).toEqual({
      startMs: at('2028-02-01T00:00:00Z'),
      endMs: at('2028-03-01T00:00:00Z'),
    });
    expect(periodBounds('month', at('2026-12-31T23:59:59Z')).endMs).toBe(at('2027-01-01T00:00:00Z'));
    expect(periodId('month', at('2026-12-06T00:00:00Z'))).toBe('m2026-12');
  });

  it('total: never resets', () => {
    expect(periodBounds('total', at('2026-12-06T00:00:00Z'))).toEqual({ startMs: 0, endMs: null });
    expect(periodId('total', 0)).toBe('total');
  });
});

describe('Retry-After of a budget refusal', () => {
  it('is the seconds to the period reset, rounded up, at least 1', () => {
    expect(budgetRetryAfterSeconds('day', at('2026-12-06T23:00:00Z'))).toBe(3600);
    expect(budgetRetryAfterSeconds('day', at('2026-12-06T23:59:59.999Z'))).toBe(1);
    expect(budgetRetryAfterSeconds('day', at('2026-12-06T23:59:58.500Z'))).toBe(2);
    expect(budgetRetryAfterSeconds('week', at('2026-12-06T00:00:00Z'))).toBe(86_400);
    expect(budgetRetryAfterSeconds('month', at('2026-12-31T00:00:00Z'))).toBe(86_400);
  });
  it('total: none', () => {
    expect(budgetRetryAfterSeconds('total', at('2026-12-06T00:00:00Z'))).toBeNull();
  });
});

describe('worst-case estimate', () => {
  const price = { input: 150_000, output: 600_000, cachedInput: 75_000 };
  it('takes max_completion_tokens, then max_tokens, then the default', () => {
    expect(maxOutputTokens({ max_completion_tokens: 10, max_tokens: 99 }, 4096)).toBe(10);
    expect(maxOutputTokens({ max_tokens: 99 }, 4096)).toBe(99);
    expect(maxOutputTokens({ max_output_tokens: 42 }, 4096)).toBe(42); // the Responses API's name
    expect(maxOutputTokens({ max_tokens: -1 }, 4096)).toBe(4096);
    expect(maxOutputTokens({ max_tokens: 1.5 }, 4096)).toBe(4096);
    expect(maxOutputTokens(null, 4096)).toBe(4096);
  });
  it('estimates one prompt token per 3 body bytes (rounded up)', () => {
    expect(estimatePromptTokens(0)).toBe(0);
    expect(estimatePromptTokens(1)).toBe(1);
    expect(estimatePromptTokens(300)).toBe(100);
    expect(estimatePromptTokens(301)).toBe(101);
  });
  it('prices prompt at the input rate and output at the output rate; unknown price → 0', () => {
    // 100 × 0.15 + 1000 × 0.6 = 615 µ$
    expect(worstCaseMicros(price, 100, 1000)).toBe(615);
    expect(worstCaseMicros(null, 100, 1000)).toBe(0);
  });
});

describe('reservation arithmetic', () => {
  it('refuses when spent + reserved + this > limit', () => {
    expect(budgetAdmits(900, 100, 1000)).toBe(true);
    expect(budgetAdmits(901, 100, 1000)).toBe(false);
    expect(budgetAdmits(1000, 0, 1000)).toBe(true);
    expect(budgetAdmits(1001, 0, 1000)).toBe(false);
  });
  it('settles to the actual cost: the unused part goes back, never sent → all of it', () => {
    expect(settlementDelta(615, 600)).toBe(-15);
    expect(settlementDelta(615, 700)).toBe(85);
    expect(settlementDelta(615, 0)).toBe(-615);
  });
  it('thresholds reached at 50/80/100 %', () => {
    expect(reachedThresholds(499, 1000)).toEqual([]);
    expect(reachedThresholds(500, 1000)).toEqual([50]);
    expect(reachedThresholds(800, 1000)).toEqual([50, 80]);
    expect(reachedThresholds(1200, 1000)).toEqual([50, 80, 100]);
    expect(reachedThresholds(5, 0)).toEqual([]);
  });
});

describe('budget subjects (admin API)', () => {
  it('parses key/user/team with a uuid (lower-cased), refuses anything else', () => {
    expect(parseBudgetSubject('key:7D1F6C2E-3C4B-4E0A-9A51-2B8F1C0E6D42')).toEqual({
      kind: 'key',
      id: '7d1f6c2e-3c4b-4e0a-9a51-2b8f1c0e6d42',
      text: 'key:7d1f6c2e-3c4b-4e0a-9a51-2b8f1c0e6d42',
    });
    for (const bad of ['ip:1.2.3.4', 'key:', 'key:nope', ':x', 'user', 'team:7d1f6c2e'])
      expect(parseBudgetSubject(bad), bad).toBeNull();
    expect(currentPeriodIds(Date.UTC(2026, 11, 6, 12))).toEqual([
      'd2026-12-06',
      'w2026-11-30',
      'm2026-12',
      'total',
    ]);
  });
});
