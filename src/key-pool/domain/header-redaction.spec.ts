import { describe, expect, it } from 'vitest';
import { maskKey } from './key-cipher.js';
import { isRedactedPlaceholder, redactHeaderValues } from './header-redaction.js';

describe('provider header redaction', () => {
  it('keeps every name and replaces each value with the upstream-key preview', () => {
    const headers = {
      'X-Portkey-Config': 'pk-live-SECRETSECRETvalue1234abcd',
      'OpenAI-Organization': 'org-7a7a7a7a7a',
      'Anthropic-Beta': 'beta1',
      'X-Empty': '',
    };
    const out = redactHeaderValues(headers);
    expect(out).toEqual({
      'X-Portkey-Config': 'pk-…abcd',
      'OpenAI-Organization': '…7a',
      'Anthropic-Beta': '…',
      'X-Empty': '…',
    });
    for (const [name, value] of Object.entries(headers)) expect(out[name]).toBe(maskKey(value));
    expect(JSON.stringify(out)).not.toContain('SECRET');
  });

  it('every preview is recognised as a placeholder; real header values are not', () => {
    for (const v of ['pk-live-SECRETSECRETvalue1234abcd', 'org-7a7a7a7a7a', 'x', ''])
      expect(isRedactedPlaceholder(maskKey(v))).toBe(true);
    for (const v of ['org-123', '2023-06-01', 'a...b', 'pk-live-abc'])
      expect(isRedactedPlaceholder(v)).toBe(false);
  });
});
