import { describe, expect, it } from 'vitest';
import { MetricsTokenCheck } from './metrics-token.js';

describe('MetricsTokenCheck', () => {
  it('allows everything when no token is configured', () => {
    const check = new MetricsTokenCheck(undefined);
    expect(check.required).toBe(false);
    expect(check.allows(undefined)).toBe(true);
  });

  it('requires exactly "Bearer <token>"', () => {
    const check = new MetricsTokenCheck('s3cret-token');
    expect(check.required).toBe(true);
    expect(check.allows('Bearer s3cret-token')).toBe(true);
    expect(check.allows('bearer s3cret-token')).toBe(true);
    expect(check.allows(['Bearer s3cret-token'])).toBe(true);
    for (const bad of [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      's3cret-token',
      'Bearer s3cret-tokenx',
      'Bearer s3cret',
      'Basic s3cret-token',
      'Bearer a b',
    ]) {
      expect(check.allows(bad), String(bad)).toBe(false);
    }
  });
});
