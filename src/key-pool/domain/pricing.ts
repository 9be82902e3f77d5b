/**
 * A provider's `pricing`: USD per million tokens per model id or `*` pattern (docs/spend.md). The
 * Spend module reads it (KeyPoolService.providerPricing) to cost each request; this file only checks
 * and normalises what an admin (or PROVIDERS_FILE) wrote.
 */
export interface ModelPricing {
  input_per_mtok: number;
  output_per_mtok: number;
  cached_input_per_mtok: number;
}

export type ProviderPricing = Record<string, ModelPricing>;

export const MAX_PRICED_MODELS = 1000;
export const MAX_PRICE_PER_MTOK = 1_000_000;
const MODEL_KEY = /^\S{1,256}$/;
const FIELDS = ['input_per_mtok', 'output_per_mtok', 'cached_input_per_mtok'] as const;

export type PricingCheck =
  { ok: true; pricing: ProviderPricing } | { ok: false; message: string; param: string };

function isPrice(value: unknown): value is number {
  return (
    typeof value === 'number' &&
    Number.isFinite(value) &&
    value >= 0 &&
    value <= MAX_PRICE_PER_MTOK &&
    Number(value.toFixed(6)) === value
  );
}

/**
 * Checks a `pricing` object: at most 1000 models (ids or `*` patterns without whitespace), each
 * `{input_per_mtok, output_per_mtok, cached_input_per_mtok?}` with numbers 0…1 000 000 of at most 6
 * decimals; `cached_input_per_mtok` defaults to `input_per_mtok`. The first problem is returned with
 * the field's path (`pricing.gpt-4o.output_per_mtok`).
 */
export function checkPricing(raw: unknown): PricingCheck {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return { ok: false, message: 'pricing must be an object of model → price', param: 'pricing' };
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length > MAX_PRICED_MODELS)
    return {
      ok: false,
      message: `pricing must have at most ${MAX_PRICED_MODELS} models, got ${entries.length}`,
      param: 'pricing',
    };
  const pricing: ProviderPricing = {};
  for (const [model, value] of entries) {
    const at = `pricing.${model}`;
    if (!MODEL_KEY.test(model))
      return {
        ok: false,
        message: `${at}: each pricing key must be a model id or * pattern of 1-256 characters without whitespace`,
        param: at,
      };
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      return {
        ok: false,
        message: `${at} must be an object {input_per_mtok, output_per_mtok, cached_input_per_mtok}`,
        param: at,
      };
    const v = value as Record<string, unknown>;
    const extra = Object.keys(v).find((k) => !(FIELDS as readonly string[]).includes(k));
    if (extra !== undefined)
      return { ok: false, message: `${at}.${extra} is not a pricing field`, param: `${at}.${extra}` };
    for (const field of FIELDS) {
      if (field === 'cached_input_per_mtok' && v[field] === undefined) continue;
      if (!isPrice(v[field]))
        return {
          ok: false,
          message: `${at}.${field} must be a number of USD per million tokens, 0-${MAX_PRICE_PER_MTOK} with at most 6 decimals`,
          param: `${at}.${field}`,
        };
    }
    const input = v.input_per_mtok as number;
    pricing[model] = {
      input_per_mtok: input,
      output_per_mtok: v.output_per_mtok as number,
      cached_input_per_mtok: (v.cached_input_per_mtok as number | undefined) ?? input,
    };
  }
  return { ok: true, pricing };
}
