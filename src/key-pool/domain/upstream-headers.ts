/**
 * Reading an upstream's rate-limit answer: how long must a key rest after a 429?
 *
 * Sources, most authoritative first:
 * 1. `retry-after-ms` (OpenAI sends it; milliseconds),
 * 2. `Retry-After` (RFC 9110: delay-seconds or an HTTP-date),
 * 3. OpenAI's `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` (Go-style durations such as
 *    "1s", "6m0s", "20ms", "1h2m3.5s"). When `x-ratelimit-remaining-requests` or `-tokens` says which
 *    budget is exhausted, that budget's reset is used; otherwise the longer of the two.
 * 4. Anthropic's `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset` (RFC 3339
 *    times): the reset of a budget whose `-remaining` says 0, otherwise the latest of them.
 * The result is floored at 1 s and capped; with no usable header the default applies.
 */

import {
  headerValue,
  parseOpenAiDuration,
  parseRetryAfter,
  remainingIsZero,
  type HeaderBag,
} from '../../common/upstream-headers.js';

export interface CooldownPolicy {
  defaultMs: number;
  maxMs: number;
  /** Floor for announced values (1 s: an upstream saying "0" still gets a breather). */
  minMs?: number;
}

export interface CooldownDecision {
  ms: number;
  /** Which header decided (for logs and Adaptive's 429 classification). */
  source:
    | 'retry-after-ms'
    | 'retry-after'
    | 'x-ratelimit-reset-requests'
    | 'x-ratelimit-reset-tokens'
    | 'anthropic-ratelimit-reset'
    | 'default';
}

/** The cooldown a key gets after an upstream 429 with these headers. */
export function cooldownFor429(
  headers: HeaderBag | undefined,
  nowMs: number,
  policy: CooldownPolicy,
): CooldownDecision {
  const minMs = policy.minMs ?? 1000;
  const clamp = (ms: number) => Math.min(policy.maxMs, Math.max(minMs, ms));

  const retryAfterMs = headerValue(headers, 'retry-after-ms');
  if (retryAfterMs !== undefined && /^\s*\d+(\.\d+)?\s*$/.test(retryAfterMs)) {
    return { ms: clamp(Math.ceil(Number(retryAfterMs))), source: 'retry-after-ms' };
  }
  const retryAfter = parseRetryAfter(headerValue(headers, 'retry-after'), nowMs);
  if (retryAfter !== null) return { ms: clamp(retryAfter), source: 'retry-after' };

  const requests = parseOpenAiDuration(headerValue(headers, 'x-ratelimit-reset-requests'));
  const tokens = parseOpenAiDuration(headerValue(headers, 'x-ratelimit-reset-tokens'));
  const requestsOut = remainingIsZero(headers, 'x-ratelimit-remaining-requests');
  const tokensOut = remainingIsZero(headers, 'x-ratelimit-remaining-tokens');
  const candidates: CooldownDecision[] = [];
  if (requests !== null && (requestsOut || !tokensOut))
    candidates.push({ ms: requests, source: 'x-ratelimit-reset-requests' });
  if (tokens !== null && (tokensOut || !requestsOut))
    candidates.push({ ms: tokens, source: 'x-ratelimit-reset-tokens' });
  if (candidates.length > 0) {
    const longest = candidates.reduce((a, b) => (b.ms > a.ms ? b : a));
    return { ms: clamp(longest.ms), source: longest.source };
  }
  const anthropic = anthropicResetMs(headers, nowMs);
  if (anthropic !== null) return { ms: clamp(anthropic), source: 'anthropic-ratelimit-reset' };
  return { ms: clamp(policy.defaultMs), source: 'default' };
}

const ANTHROPIC_BUDGETS = ['requests', 'tokens', 'input-tokens', 'output-tokens'] as const;

/** Anthropic's rate-limit resets (RFC 3339 times): the exhausted budgets' latest, else all budgets' latest; ms from now. */
function anthropicResetMs(headers: HeaderBag | undefined, nowMs: number): number | null {
  let exhausted: number | null = null;
  let any: number | null = null;
  for (const budget of ANTHROPIC_BUDGETS) {
    const raw = headerValue(headers, `anthropic-ratelimit-${budget}-reset`);
    if (raw === undefined) continue;
    const at = Date.parse(raw);
    if (Number.isNaN(at)) continue;
    const ms = Math.max(0, at - nowMs);
    any = Math.max(any ?? 0, ms);
    if (remainingIsZero(headers, `anthropic-ratelimit-${budget}-remaining`))
      exhausted = Math.max(exhausted ?? 0, ms);
  }
  return exhausted ?? any;
}
