import { costMicroUsd, type MicroPrice } from './cost.js';

/**
 * Budgets (docs/spend.md "Budgets"): the pure rules. A subject (API key, user, team) with a budget
 * has one counter per period — spent + reserved, in integer micro-dollars — in the client-limit
 * store; admission reserves the request's worst-case cost there in the same atomic step as the rate
 * limits, and the answer settles it to the actual cost.
 */

export type BudgetPeriod = 'day' | 'week' | 'month' | 'total';

export interface Budget {
  /** The limit in integer micro-dollars. */
  limitMicros: number;
  period: BudgetPeriod;
}

const DAY_MS = 86_400_000;

/**
 * The UTC calendar period `nowMs` falls in: [startMs, endMs). `day`: the UTC day; `week`: the ISO
 * week (Monday 00:00 UTC to the next Monday); `month`: the UTC calendar month; `total`: never resets
 * (endMs null).
 */
export function periodBounds(period: BudgetPeriod, nowMs: number): { startMs: number; endMs: number | null } {
  if (period === 'total') return { startMs: 0, endMs: null };
  if (period === 'day') {
    const start = Math.floor(nowMs / DAY_MS) * DAY_MS;
    return { startMs: start, endMs: start + DAY_MS };
  }
  if (period === 'week') {
    const day = Math.floor(nowMs / DAY_MS);
    // 1970-01-01 was a Thursday: (day + 3) mod 7 is the days since Monday
    const sinceMonday = (((day + 3) % 7) + 7) % 7;
    const start = (day - sinceMonday) * DAY_MS;
    return { startMs: start, endMs: start + 7 * DAY_MS };
  }
  const d = new Date(nowMs);
  const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const end = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  return { startMs: start, endMs: end };
}

/** The period's id in its counter's key: `d2026-12-06`, `w2026-11-30` (its Monday), `m2026-12`, `total`. */
export function periodId(period: BudgetPeriod, nowMs: number): string {
  if (period === 'total') return 'total';
  const iso = new Date(periodBounds(period, nowMs).startMs).toISOString();
  return period === 'month' ? `m${iso.slice(0, 7)}` : `${period[0]}${iso.slice(0, 10)}`;
}

/**
 * Retry-After of a refusal: whole seconds until the period resets (at least 1); null for `total`
 * (it never resets: the 429 carries no Retry-After — only an admin raising the limit helps).
 */
export function budgetRetryAfterSeconds(period: BudgetPeriod, nowMs: number): number | null {
  const { endMs } = periodBounds(period, nowMs);
  if (endMs === null) return null;
  return Math.max(1, Math.ceil((endMs - nowMs) / 1000));
}

/** Prompt tokens estimated from the request body's size: one token per 3 bytes (rounded up). */
export const PROMPT_BYTES_PER_TOKEN = 3;

export function estimatePromptTokens(bodyBytes: number): number {
  if (!Number.isFinite(bodyBytes) || bodyBytes <= 0) return 0;
  return Math.ceil(bodyBytes / PROMPT_BYTES_PER_TOKEN);
}

/**
 * The completion tokens a request may produce: its `max_completion_tokens`, else `max_tokens`
 * (Anthropic's and OpenAI's older name), else `defaultMaxTokens`.
 */
export function maxOutputTokens(body: unknown, defaultMaxTokens: number): number {
  if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    for (const field of ['max_completion_tokens', 'max_tokens', 'max_output_tokens']) {
      const v = b[field];
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
    }
  }
  return defaultMaxTokens;
}

/**
 * A request's worst-case cost in µ$: max output tokens × the output price + the estimated prompt
 * tokens × the input price (the uncached rate: the dearest). 0 when the price is unknown.
 */
export function worstCaseMicros(
  price: MicroPrice | null,
  promptTokens: number,
  outputTokens: number,
): number {
  if (!price) return 0;
  return costMicroUsd({ promptTokens, cachedPromptTokens: 0, completionTokens: outputTokens }, price);
}

/**
 * Whether a reservation fits: refused when spent + reserved + this > limit (a request that costs 0 is
 * admitted while spent + reserved ≤ limit).
 */
export function budgetAdmits(usedMicros: number, reserveMicros: number, limitMicros: number): boolean {
  return usedMicros + reserveMicros <= limitMicros;
}

/**
 * A settlement's change to the counter: actual − reserved (negative: the unused part of the
 * reservation is given back). A request never sent settles with actual 0.
 */
export function settlementDelta(reservedMicros: number, actualMicros: number): number {
  return Math.max(0, Math.floor(actualMicros)) - reservedMicros;
}

/** The thresholds (percent of the limit) that fire `budget.threshold`, ascending. */
export const BUDGET_THRESHOLDS = [50, 80, 100] as const;

/**
 * The thresholds the counter has reached (µ$ spent + reserved against the limit). The caller claims
 * each once per subject and period (AlertsService's once-claim), so a threshold fires once however
 * many settlements see it.
 */
export function reachedThresholds(usedMicros: number, limitMicros: number): number[] {
  if (limitMicros <= 0) return [];
  return BUDGET_THRESHOLDS.filter((t) => usedMicros * 100 >= t * limitMicros);
}

/** A budgeted subject named in the admin API: `key:<uuid>`, `user:<uuid>`, `team:<uuid>`. */
export interface BudgetSubject {
  kind: 'key' | 'user' | 'team';
  /** Lower-case uuid. */
  id: string;
  /** `<kind>:<id>`, as the counters' keys spell it. */
  text: string;
}

const SUBJECT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The subject a `key:…` / `user:…` / `team:…` text names; null when malformed. */
export function parseBudgetSubject(text: string): BudgetSubject | null {
  const idx = text.indexOf(':');
  if (idx <= 0) return null;
  const kind = text.slice(0, idx);
  const id = text.slice(idx + 1);
  if ((kind !== 'key' && kind !== 'user' && kind !== 'team') || !SUBJECT_ID.test(id)) return null;
  return { kind, id: id.toLowerCase(), text: `${kind}:${id.toLowerCase()}` };
}

/** Every period's id at `nowMs` (an admin reset clears the current counter of each). */
export function currentPeriodIds(nowMs: number): string[] {
  return (['day', 'week', 'month', 'total'] as const).map((p) => periodId(p, nowMs));
}
