import { describe, expect, it } from 'vitest';
import { isPrice } from './cost.js';
import { lookupPrice, PRICE_CATALOG, resolvePrice } from './price-catalog.js';

const price = (n: number) => ({ input_per_mtok: n, output_per_mtok: n, cached_input_per_mtok: n });

describe('price catalog', () => {
  it('every entry is a valid price', () => {
    for (const [model, p] of Object.entries(PRICE_CATALOG)) {
      expect(
        isPrice(p.input_per_mtok) && isPrice(p.output_per_mtok) && isPrice(p.cached_input_per_mtok),
        model,
      ).toBe(true);
      expect(p.cached_input_per_mtok, model).toBeLessThanOrEqual(p.input_per_mtok);
    }
  });

  it('knows the well-known models, dated ids included', () => {
    const input = (m: string) => resolvePrice(null, m)?.price.input_per_mtok;
    expect(input('gpt-4o')).toBe(2.5);
    expect(input('gpt-4o-mini')).toBe(0.15);
    expect(input('gpt-4o-mini-2024-07-18')).toBe(0.15);
    expect(input('gpt-4.1')).toBe(2);
    expect(input('gpt-4.1-mini-2025-04-14')).toBe(0.4);
    expect(input('gpt-4.1-nano')).toBe(0.1);
    expect(input('o3')).toBe(2);
    expect(input('o4-mini')).toBe(1.1);
    expect(input('text-embedding-3-small')).toBe(0.02);
    expect(input('claude-3-5-haiku-20241022')).toBe(0.8);
    expect(input('claude-opus-4-20250514')).toBe(15);
    expect(input('claude-sonnet-4-20250514')).toBe(3);
    expect(input('meta/llama-3.1-70b-instruct')).toBe(0.88);
    expect(resolvePrice(null, 'my-local-model')).toBeNull();
    expect(resolvePrice(null, 'gpt-4o-mini')?.source).toBe('catalog');
  });
});

describe('lookupPrice', () => {
  const table = {
    'gpt-4o': price(1),
    'gpt-*': price(2),
    'gpt-4o-*': price(3),
    '*': price(4),
    'a*b*c': price(5),
    'a*bc': price(6),
  };

  it('an exact id wins over every pattern', () => {
    expect(lookupPrice(table, 'gpt-4o')).toEqual({ key: 'gpt-4o', price: price(1) });
  });

  it('then the most specific pattern: longest literal text, then fewest *', () => {
    expect(lookupPrice(table, 'gpt-4o-mini')?.key).toBe('gpt-4o-*');
    expect(lookupPrice(table, 'gpt-3.5')?.key).toBe('gpt-*');
    expect(lookupPrice(table, 'llama')?.key).toBe('*');
    expect(lookupPrice(table, 'axbc')?.key).toBe('a*bc');
    expect(lookupPrice({ 'gpt-4o-*': price(1) }, 'gpt-4o')).toBeNull();
  });

  it('regex characters in ids are literal', () => {
    expect(lookupPrice({ 'gpt-4.1*': price(1) }, 'gpt-451')).toBeNull();
    expect(lookupPrice({ 'org/(x)+*': price(1) }, 'org/(x)+y')?.key).toBe('org/(x)+*');
  });
});

describe('resolvePrice', () => {
  it("the provider's price wins over the catalog, even a pattern over a catalog exact id", () => {
    expect(resolvePrice({ 'gpt-4o-mini': price(9) }, 'gpt-4o-mini')).toEqual({
      price: price(9),
      source: 'provider',
      key: 'gpt-4o-mini',
    });
    expect(resolvePrice({ 'gpt-*': price(7) }, 'gpt-4o')?.price).toEqual(price(7));
    expect(resolvePrice({ 'other-*': price(7) }, 'gpt-4o')?.source).toBe('catalog');
    expect(resolvePrice({}, 'unknown')).toBeNull();
  });
});
