import { describe, expect, it } from 'vitest';
import type { Upstream429Type } from './classify-429.js';
import { isRetreatPushback } from './pushback.js';

describe('isRetreatPushback (what counts in a provider’s retreat window)', () => {
  const table: [string, number, Upstream429Type | null, boolean][] = [
    ['429 rpm (OpenAI or Anthropic rate_limit_error)', 429, 'rpm', true],
    ['429 tpm', 429, 'tpm', true],
    ['429 unknown kind', 429, 'unknown', true],
    [
      '429 concurrency: the key’s learned limit answers it, not the provider’s rate',
      429,
      'concurrency',
      false,
    ],
    ['529 overloaded_error (Anthropic): provider overload', 529, null, true],
    ['503: provider overload', 503, null, true],
    ['500: a failure, not pushback', 500, null, false],
    ['502', 502, null, false],
    ['200', 200, null, false],
    ['400', 400, null, false],
  ];
  it.each(table)('%s', (_name, status, type, expected) => {
    expect(isRetreatPushback(status, type)).toBe(expected);
  });
});
