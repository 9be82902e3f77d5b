import { describe, expect, it } from 'vitest';
import { checkPricing } from './pricing.js';

describe('checkPricing', () => {
  it('accepts ids and patterns; cached input defaults to the input price', () => {
    expect(
      checkPricing({
        'gpt-4o': { input_per_mtok: 2.5, output_per_mtok: 10, cached_input_per_mtok: 1.25 },
        'llama-*': { input_per_mtok: 0.000001, output_per_mtok: 0 },
      }),
    ).toEqual({
      ok: true,
      pricing: {
        'gpt-4o': { input_per_mtok: 2.5, output_per_mtok: 10, cached_input_per_mtok: 1.25 },
        'llama-*': { input_per_mtok: 0.000001, output_per_mtok: 0, cached_input_per_mtok: 0.000001 },
      },
    });
    expect(checkPricing({})).toEqual({ ok: true, pricing: {} });
  });

  it('names the field of the first problem', () => {
    const param = (raw: unknown) => {
      const r = checkPricing(raw);
      return r.ok ? null : r.param;
    };
    expect(param([])).toBe('pricing');
    expect(param({ m: 1 })).toBe('pricing.m');
    expect(param({ 'a b': { input_per_mtok: 1, output_per_mtok: 1 } })).toBe('pricing.a b');
    expect(param({ m: { input_per_mtok: -1, output_per_mtok: 1 } })).toBe('pricing.m.input_per_mtok');
    expect(param({ m: { input_per_mtok: 1 } })).toBe('pricing.m.output_per_mtok');
    expect(param({ m: { input_per_mtok: 1, output_per_mtok: 0.1234567 } })).toBe('pricing.m.output_per_mtok');
    expect(param({ m: { input_per_mtok: 1, output_per_mtok: '2' } })).toBe('pricing.m.output_per_mtok');
    expect(param({ m: { input_per_mtok: 1, output_per_mtok: 1, cached_input_per_mtok: null } })).toBe(
      'pricing.m.cached_input_per_mtok',
    );
    expect(param({ m: { input_per_mtok: 1, output_per_mtok: 1, per_request: 1 } })).toBe(
      'pricing.m.per_request',
    );
    expect(param({ m: { input_per_mtok: 1_000_001, output_per_mtok: 1 } })).toBe('pricing.m.input_per_mtok');
    const many = Object.fromEntries(
      Array.from({ length: 1001 }, (_, i) => [`m${i}`, { input_per_mtok: 1, output_per_mtok: 1 }]),
    );
    expect(param(many)).toBe('pricing');
  });
});
