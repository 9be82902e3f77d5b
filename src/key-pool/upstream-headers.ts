/**
 * Reading an upstream's rate-limit answer: how long must a key rest after a 429?
 *
 * Sources, most authoritative first:
 * 1. `retry-after-ms` (OpenAI sends it; milliseconds),
 * 2. `Retry-After` (RFC 9110: delay-seconds or an HTTP-date),
 * 3. OpenAI's `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` (Go-style durations such as
 *    "1s", "6m0s", "20ms", "1h2m3.5s"). When `x-ratelimit-remaining-requests` or `-tokens` says which
 *    budget is exhausted, that budget's reset is used; otherwise the longer of the two.
 * The result is floored at 1 s and capped; with no usable header the default applies.
 */

export type HeaderBag = Headers | Record<string, string | string[] | number | undefined | null>;

/** Case-insensitive single header value (first of a list). */
export function headerValue(headers: HeaderBag | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined;
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== lower || v === undefined || v === null) continue;
    return Array.isArray(v) ? v[0] : String(v);
  }
  return undefined;
}

/** `Retry-After`: non-negative delay-seconds (fractions tolerated) or an HTTP-date. Milliseconds, or null. */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | null {
  if (value === undefined) return null;
  const v = value.trim();
  if (v === '') return null;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  // HTTP-date (IMF-fixdate, and the obsolete RFC 850 / asctime forms Date.parse understands).
  if (!/[a-z]/i.test(v)) return null;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - nowMs);
}

const DURATION_UNITS: Record<string, number> = {
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
  us: 0.001,
  µs: 0.001,
  ns: 0.000001,
};

/** Go/OpenAI durations: "1s", "6m0s", "20ms", "1h2m3.5s", "0.5s". Milliseconds (rounded up), or null. */
export function parseOpenAiDuration(value: string | undefined): number | null {
  if (value === undefined) return null;
  const v = value.trim();
  if (v === '') return null;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.ceil(Number(v) * 1000); // bare number: seconds
  const re = /(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/gy;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(v); m; m = re.exec(v)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    consumed = re.lastIndex;
  }
  if (consumed !== v.length || consumed === 0) return null;
  return Math.ceil(total);
}

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
    'retry-after-ms' | 'retry-after' | 'x-ratelimit-reset-requests' | 'x-ratelimit-reset-tokens' | 'default';
}

function remainingIsZero(headers: HeaderBag | undefined, name: string): boolean {
  const v = headerValue(headers, name);
  return v !== undefined && /^\s*0+\s*$/.test(v);
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
  return { ms: clamp(policy.defaultMs), source: 'default' };
}
