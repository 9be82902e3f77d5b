import type { Upstream429Type } from './classify-429.js';

/**
 * Which upstream answers are pushback for a provider's retreat machine (retreat-machine.ts: they
 * count in its window like rate 429s). The one place the statuses are mapped:
 *
 * - 429 of a rate kind (rpm, tpm, unknown): the provider's request rate is too high — pushback (the
 *   key also cools down: KeyPool);
 * - 429 of the concurrency kind: the key's learned limit answers it (Adaptive), not the provider's rate;
 * - 503 and 529 (Anthropic's `overloaded_error`): the provider itself is overloaded — pushback, and
 *   nothing else here (no key cooldown, no learned-limit change: every key of the provider would get
 *   the same answer). The relay retries them like any 5xx (retry-table.ts);
 * - anything else: not pushback.
 */
export const OVERLOAD_STATUSES: ReadonlySet<number> = new Set([503, 529]);

export function isRetreatPushback(status: number, type429: Upstream429Type | null): boolean {
  if (status === 429) return type429 !== 'concurrency';
  return OVERLOAD_STATUSES.has(status);
}
