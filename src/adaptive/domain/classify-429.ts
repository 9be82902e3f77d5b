/**
 * What kind of limit an upstream 429 hit. Pure (no I/O), unit-tested with a table in
 * classify-429.spec.ts; the rules are documented in docs/adaptive.md.
 *
 * - concurrency: too many requests at the same time on this key → the learned limit goes down;
 * - rpm / tpm: a requests- or tokens-per-window budget is spent → count only (KeyPool's cooldown
 *   rests the key until the window resets; lowering concurrency would not help);
 * - unknown: no signal either way → a mild decrease (the safe side, slowly).
 */
import { remainingIsZero, retryAfterMs, type HeaderBag } from '../../common/upstream-headers.js';
export type Upstream429Type = 'concurrency' | 'rpm' | 'tpm' | 'unknown';

/** Which rule decided (logs, tests). */
export type Upstream429Signal =
  | 'provider_says_concurrency'
  | 'remaining_requests_zero'
  | 'remaining_tokens_zero'
  | 'provider_says_tokens'
  | 'provider_says_requests'
  | 'at_concurrency_limit'
  | 'long_retry_after'
  | 'no_signal';

export interface Classify429Input {
  headers?: HeaderBag | undefined;
  /** The upstream error object (type, code, message), when the relay parsed one. */
  error?: { type?: string | null; code?: string | null; message?: string | null } | null | undefined;
  /** In-flight requests on the key when this request took its slot (itself included). */
  inFlight: number;
  /** The concurrency limit enforced for that acquisition (learned or fixed); null = none. */
  limit: number | null;
  /** A Retry-After at least this long (ms) below the limit means a rate window, not concurrency. */
  longRetryAfterMs: number;
  nowMs: number;
}

export interface Classification {
  type: Upstream429Type;
  signal: Upstream429Signal;
}

/** Anthropic's token budgets' remaining headers. */
const ANTHROPIC_TOKEN_REMAINING = [
  'anthropic-ratelimit-tokens-remaining',
  'anthropic-ratelimit-input-tokens-remaining',
  'anthropic-ratelimit-output-tokens-remaining',
];

const CONCURRENCY_WORDS =
  /concurren|parallel|simultaneous|too many (open |active |in[- ]?flight |pending )?(requests|connections) at (the same|a|one) time|in[- ]?flight|overloaded_concurrent/i;
const TOKEN_WORDS =
  /tokens? per (min|minute|day|hour)|\btpm\b|\btpd\b|token(s)? (rate )?limit|input[_ ]tokens|output[_ ]tokens/i;
const REQUEST_WORDS =
  /requests? per (min|minute|day|hour|second)|\brpm\b|\brpd\b|\brps\b|rate[_ ]limit[_ ]exceeded|rate limit reached for requests|insufficient[_ ]quota|quota/i;

/**
 * The rules, first match wins:
 * 1. the provider says "concurrent/parallel/in flight" in the error code, type or message → concurrency;
 * 2. `x-ratelimit-remaining-requests: 0` → rpm; `x-ratelimit-remaining-tokens: 0` → tpm (Anthropic's
 *    `anthropic-ratelimit-requests-remaining` / `-{tokens,input-tokens,output-tokens}-remaining` alike);
 * 3. the provider names a token budget → tpm, a request budget or quota → rpm;
 * 4. in-flight was at or above the enforced concurrency limit (and nothing above said RPM/TPM) → concurrency;
 * 5. a long Retry-After (≥ longRetryAfterMs) while below the limit → rpm (a window resets, not a slot);
 * 6. otherwise unknown.
 */
export function classify429(input: Classify429Input): Classification {
  const e = input.error ?? null;
  const text = [e?.code, e?.type, e?.message].filter((s): s is string => typeof s === 'string').join(' ');
  if (text && CONCURRENCY_WORDS.test(text))
    return { type: 'concurrency', signal: 'provider_says_concurrency' };
  if (
    remainingIsZero(input.headers, 'x-ratelimit-remaining-requests') ||
    remainingIsZero(input.headers, 'anthropic-ratelimit-requests-remaining')
  )
    return { type: 'rpm', signal: 'remaining_requests_zero' };
  if (
    remainingIsZero(input.headers, 'x-ratelimit-remaining-tokens') ||
    ANTHROPIC_TOKEN_REMAINING.some((name) => remainingIsZero(input.headers, name))
  )
    return { type: 'tpm', signal: 'remaining_tokens_zero' };
  if (text && TOKEN_WORDS.test(text)) return { type: 'tpm', signal: 'provider_says_tokens' };
  if (text && REQUEST_WORDS.test(text)) return { type: 'rpm', signal: 'provider_says_requests' };
  if (input.limit !== null && input.inFlight >= input.limit)
    return { type: 'concurrency', signal: 'at_concurrency_limit' };
  const wait = retryAfterMs(input.headers, input.nowMs);
  if (wait !== null && wait >= input.longRetryAfterMs) return { type: 'rpm', signal: 'long_retry_after' };
  return { type: 'unknown', signal: 'no_signal' };
}
