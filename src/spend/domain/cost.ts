/**
 * Request cost in integer micro-dollars (1 USD = 1 000 000 µ$), computed from token counts and a
 * price in USD per million tokens. No floating point touches a stored amount: prices (at most 6
 * decimals) become integer µ$ per million tokens, the products are summed as BigInt, and the sum is
 * divided once, rounded to the nearest micro-dollar (halves up). docs/spend.md § Rounding.
 */

/** A model's price in USD per million tokens, as the admin API and the catalog write it. */
export interface ModelPrice {
  input_per_mtok: number;
  output_per_mtok: number;
  /** Prompt tokens the upstream served from its cache (OpenAI `prompt_tokens_details.cached_tokens`). */
  cached_input_per_mtok: number;
}

/** A price in integer micro-dollars per million tokens. */
export interface MicroPrice {
  input: number;
  output: number;
  cachedInput: number;
}

/** Token counts of one request. `cachedPromptTokens` is part of `promptTokens` (OpenAI's convention). */
export interface TokenCounts {
  promptTokens: number;
  cachedPromptTokens: number;
  completionTokens: number;
}

/** The highest price accepted per million tokens (keeps every product exact as a double, too). */
export const MAX_PRICE_PER_MTOK = 1_000_000;
export const MICROS_PER_USD = 1_000_000;

/** Whether `value` is a price: a finite number, 0 ≤ value ≤ MAX_PRICE_PER_MTOK, at most 6 decimals. */
export function isPrice(value: unknown): value is number {
  return (
    typeof value === 'number' &&
    Number.isFinite(value) &&
    value >= 0 &&
    value <= MAX_PRICE_PER_MTOK &&
    Number(value.toFixed(6)) === value
  );
}

/** USD (at most 6 decimals) → integer micro-dollars. Exact for every value `isPrice` accepts. */
export function toMicros(usd: number): number {
  return Math.round(usd * MICROS_PER_USD);
}

export function microPrice(p: ModelPrice): MicroPrice {
  return {
    input: toMicros(p.input_per_mtok),
    output: toMicros(p.output_per_mtok),
    cachedInput: toMicros(p.cached_input_per_mtok),
  };
}

const MILLION = 1_000_000n;
const HALF_MILLION = 500_000n;

function count(n: number): bigint {
  return Number.isFinite(n) && n > 0 ? BigInt(Math.floor(n)) : 0n;
}

/**
 * round_half_up((uncached_prompt × input + cached_prompt × cached_input + completion × output) / 10^6)
 * in micro-dollars, where prices are µ$ per million tokens and uncached_prompt = prompt − cached
 * (cached is capped at prompt). Negative or non-finite counts count as 0.
 */
export function costMicroUsd(tokens: TokenCounts, price: MicroPrice): number {
  const prompt = count(tokens.promptTokens);
  let cached = count(tokens.cachedPromptTokens);
  if (cached > prompt) cached = prompt;
  const numerator =
    (prompt - cached) * BigInt(price.input) +
    cached * BigInt(price.cachedInput) +
    count(tokens.completionTokens) * BigInt(price.output);
  return Number((numerator + HALF_MILLION) / MILLION);
}

/**
 * Micro-dollars as a decimal USD number (`cost_usd` of the spend API): built from the integer's
 * digits, so 1234567 µ$ is exactly the double nearest to 1.234567. `micros` may be a bigint string
 * (Postgres `bigint`/`numeric` sums).
 */
export function microsToUsd(micros: number | bigint | string): number {
  const n = BigInt(micros);
  const negative = n < 0n;
  const abs = negative ? -n : n;
  const whole = abs / MILLION;
  const frac = (abs % MILLION).toString().padStart(6, '0');
  return Number(`${negative ? '-' : ''}${whole}.${frac}`);
}
