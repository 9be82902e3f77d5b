/**
 * Readers for an upstream's rate-limit headers, shared by KeyPool (how long a key rests after a
 * 429) and Adaptive (what kind of 429 it was). Pure functions, no I/O.
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

/** Whether a remaining-budget header (x-ratelimit-remaining-requests / -tokens) says 0. */
export function remainingIsZero(headers: HeaderBag | undefined, name: string): boolean {
  const v = headerValue(headers, name);
  return v !== undefined && /^\s*0+\s*$/.test(v);
}

/** `retry-after-ms`, else `Retry-After` (seconds or HTTP date), in ms; null when absent or unreadable. */
export function retryAfterMs(headers: HeaderBag | undefined, nowMs: number): number | null {
  const ms = headerValue(headers, 'retry-after-ms')?.trim();
  if (ms && /^\d+(\.\d+)?$/.test(ms)) return Math.ceil(Number(ms));
  return parseRetryAfter(headerValue(headers, 'retry-after'), nowMs);
}
