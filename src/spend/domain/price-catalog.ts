import type { ModelPrice } from './cost.js';

/**
 * The built-in price catalog: list prices of well-known models in USD per million tokens, used when
 * the provider serving a request has no price for its model. APPROXIMATE: copied by hand from the
 * vendors' public pricing pages on CATALOG_PRICES_AS_OF; vendors change prices, discount batch or
 * committed use, and OpenAI-compatible resellers charge their own. An admin's `pricing` on the
 * provider always wins (docs/spend.md § Catalog).
 *
 * Keys are model ids or `*` patterns, matched like provider models: an exact id wins, then the most
 * specific pattern (longest literal text, then fewest `*`).
 */
export const CATALOG_PRICES_AS_OF = '2025-08-01';

const p = (input: number, cached: number, output: number): ModelPrice => ({
  input_per_mtok: input,
  output_per_mtok: output,
  cached_input_per_mtok: cached,
});

export const PRICE_CATALOG: Readonly<Record<string, ModelPrice>> = Object.freeze({
  // OpenAI (cached input: prompt caching's discounted rate)
  'gpt-4o': p(2.5, 1.25, 10),
  'gpt-4o-2024-08-06': p(2.5, 1.25, 10),
  'gpt-4o-2024-11-20': p(2.5, 1.25, 10),
  'gpt-4o-mini*': p(0.15, 0.075, 0.6),
  'gpt-4.1*': p(2, 0.5, 8),
  'gpt-4.1-mini*': p(0.4, 0.1, 1.6),
  'gpt-4.1-nano*': p(0.1, 0.025, 0.4),
  o3: p(2, 0.5, 8),
  'o3-20*': p(2, 0.5, 8),
  'o4-mini*': p(1.1, 0.275, 4.4),
  'text-embedding-3-small': p(0.02, 0.02, 0),
  'text-embedding-3-large': p(0.13, 0.13, 0),
  // Anthropic (cached input: cache reads)
  'claude-3-5-sonnet*': p(3, 0.3, 15),
  'claude-3-7-sonnet*': p(3, 0.3, 15),
  'claude-sonnet-4*': p(3, 0.3, 15),
  'claude-opus-4*': p(15, 1.5, 75),
  'claude-3-5-haiku*': p(0.8, 0.08, 4),
  'claude-3-haiku*': p(0.25, 0.03, 1.25),
  // Llama 3.1 as NVIDIA NIM names it (typical hosted serverless rates; self-hosted NIM has no token price)
  'meta/llama-3.1-8b-instruct': p(0.18, 0.18, 0.18),
  'meta/llama-3.1-70b-instruct': p(0.88, 0.88, 0.88),
  'meta/llama-3.1-405b-instruct': p(3.5, 3.5, 3.5),
});

export type PriceTable = Readonly<Record<string, ModelPrice>>;

function isPattern(entry: string): boolean {
  return entry.includes('*');
}

const patterns = new Map<string, RegExp>();
function patternMatches(pattern: string, model: string): boolean {
  let re = patterns.get(pattern);
  if (!re) {
    re = new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`);
    if (patterns.size > 10_000) patterns.clear();
    patterns.set(pattern, re);
  }
  return re.test(model);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Longer literal text first, then fewer `*`, then the pattern's own order (deterministic). */
function moreSpecific(a: string, b: string): boolean {
  const la = a.replace(/\*/g, '').length;
  const lb = b.replace(/\*/g, '').length;
  if (la !== lb) return la > lb;
  const wa = a.split('*').length;
  const wb = b.split('*').length;
  if (wa !== wb) return wa < wb;
  return a < b;
}

/** The table's entry for `model`: the exact id, else the most specific matching pattern; null: none. */
export function lookupPrice(table: PriceTable, model: string): { key: string; price: ModelPrice } | null {
  const exact = Object.prototype.hasOwnProperty.call(table, model) ? table[model] : undefined;
  if (exact && !isPattern(model)) return { key: model, price: exact };
  let best: string | null = null;
  for (const key of Object.keys(table)) {
    if (!isPattern(key) || !patternMatches(key, model)) continue;
    if (best === null || moreSpecific(key, best)) best = key;
  }
  return best === null ? null : { key: best, price: table[best]! };
}

/** Where a price came from: the provider's `pricing`, the built-in catalog, or nowhere. */
export type PriceSource = 'provider' | 'catalog';

/**
 * The price of `model` on a provider: the provider's own table first (exact, then patterns), then the
 * catalog (exact, then patterns). An admin's entry — even a pattern — always wins over the catalog.
 */
export function resolvePrice(
  providerTable: PriceTable | null | undefined,
  model: string,
  catalog: PriceTable = PRICE_CATALOG,
): { price: ModelPrice; source: PriceSource; key: string } | null {
  const own = providerTable ? lookupPrice(providerTable, model) : null;
  if (own) return { ...own, source: 'provider' };
  const built = lookupPrice(catalog, model);
  return built ? { ...built, source: 'catalog' } : null;
}
