import { describe, expect, it } from 'vitest';
import { costMicroUsd, isPrice, microPrice, microsToUsd, toMicros } from './cost.js';

const mini = microPrice({ input_per_mtok: 0.15, output_per_mtok: 0.6, cached_input_per_mtok: 0.075 });

describe('prices', () => {
  it('accepts numbers ≥ 0 with at most 6 decimals, up to 1 000 000', () => {
    for (const ok of [0, 0.000001, 0.075, 2.5, 1_000_000, 123.456789])
      expect(isPrice(ok), String(ok)).toBe(true);
    for (const bad of [-0.01, 0.0000001, 1.2345678, 1_000_000.5, Number.NaN, Infinity, '1', null])
      expect(isPrice(bad), String(bad)).toBe(false);
  });

  it('converts to integer micro-dollars exactly', () => {
    expect(toMicros(0.075)).toBe(75_000);
    expect(toMicros(0.000001)).toBe(1);
    expect(toMicros(123.456789)).toBe(123_456_789);
    expect(toMicros(0.1 + 0.2)).toBe(300_000);
    expect(mini).toEqual({ input: 150_000, output: 600_000, cachedInput: 75_000 });
  });
});

describe('costMicroUsd', () => {
  it('tokens × price per million, in micro-dollars', () => {
    // 1M prompt tokens at $0.15 = 150 000 µ$; 1M completion at $0.60 = 600 000 µ$
    expect(costMicroUsd({ promptTokens: 1_000_000, cachedPromptTokens: 0, completionTokens: 0 }, mini)).toBe(
      150_000,
    );
    expect(costMicroUsd({ promptTokens: 0, cachedPromptTokens: 0, completionTokens: 1_000_000 }, mini)).toBe(
      600_000,
    );
    // 1000 prompt + 500 completion at gpt-4o ($2.50 / $10): 2500 + 5000 µ$
    const gpt4o = microPrice({ input_per_mtok: 2.5, output_per_mtok: 10, cached_input_per_mtok: 1.25 });
    expect(costMicroUsd({ promptTokens: 1000, cachedPromptTokens: 0, completionTokens: 500 }, gpt4o)).toBe(
      7500,
    );
  });

  it('cached prompt tokens are part of the prompt and charged at the cached rate', () => {
    // 1000 prompt of which 400 cached: 600 × 2.5 + 400 × 1.25 = 1500 + 500 µ$; + 10 completion × 10 = 100
    const gpt4o = microPrice({ input_per_mtok: 2.5, output_per_mtok: 10, cached_input_per_mtok: 1.25 });
    expect(costMicroUsd({ promptTokens: 1000, cachedPromptTokens: 400, completionTokens: 10 }, gpt4o)).toBe(
      2100,
    );
    // more cached than prompt (a broken upstream): capped at the prompt
    expect(costMicroUsd({ promptTokens: 100, cachedPromptTokens: 1000, completionTokens: 0 }, gpt4o)).toBe(
      125,
    );
  });

  it('rounds the whole sum once to the nearest micro-dollar, halves up', () => {
    // 10 prompt × 150 000 + 5 completion × 600 000 = 4 500 000 / 10^6 = 4.5 → 5
    expect(costMicroUsd({ promptTokens: 10, cachedPromptTokens: 0, completionTokens: 5 }, mini)).toBe(5);
    // 3 × 150 000 = 450 000 → 0.45 → 0
    expect(costMicroUsd({ promptTokens: 3, cachedPromptTokens: 0, completionTokens: 0 }, mini)).toBe(0);
    // 1 × 75 000 + 7 × 150 000 = 1 125 000 → 1.125 → 1 (not 0 + 1 rounded per part)
    expect(costMicroUsd({ promptTokens: 8, cachedPromptTokens: 1, completionTokens: 0 }, mini)).toBe(1);
  });

  it('stays exact beyond 2^53 intermediate products', () => {
    const dear = microPrice({ input_per_mtok: 999_999.999999, output_per_mtok: 0, cached_input_per_mtok: 0 });
    // 2e9 tokens × 999 999 999 999 µ$/Mtok = 1 999 999 999 998 000 000 000 / 10^6
    expect(
      costMicroUsd({ promptTokens: 2_000_000_000, cachedPromptTokens: 0, completionTokens: 0 }, dear),
    ).toBe(1_999_999_999_998_000);
  });

  it('negative, fractional or non-finite counts never produce a negative or NaN cost', () => {
    expect(
      costMicroUsd({ promptTokens: -5, cachedPromptTokens: Number.NaN, completionTokens: 2.9 }, mini),
    ).toBe(1);
    expect(costMicroUsd({ promptTokens: 0, cachedPromptTokens: 0, completionTokens: 0 }, mini)).toBe(0);
  });
});

describe('microsToUsd', () => {
  it('renders micro-dollars as the decimal number', () => {
    expect(microsToUsd(1_234_567)).toBe(1.234567);
    expect(microsToUsd('5')).toBe(0.000005);
    expect(microsToUsd(0)).toBe(0);
    expect(microsToUsd('300000')).toBe(0.3);
    expect(microsToUsd(-1_500_000)).toBe(-1.5);
    expect(microsToUsd('123456789012345678')).toBe(Number('123456789012.345678'));
  });
});
