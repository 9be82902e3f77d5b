/**
 * Retry schedule of a webhook delivery: the wait after the n-th failed attempt (1-based) is
 * RETRY_DELAYS_MS[n - 1], the last entry repeating. With WEBHOOK_MAX_ATTEMPTS = 6 (default) a
 * delivery is tried at 0 s, 1 s, 6 s, 36 s, 2.6 min and 12.6 min after its event, then given up.
 */
export const RETRY_DELAYS_MS: readonly number[] = [1_000, 5_000, 30_000, 120_000, 600_000];

export function retryDelayMs(failedAttempts: number): number {
  const i = Math.min(Math.max(failedAttempts, 1), RETRY_DELAYS_MS.length) - 1;
  return RETRY_DELAYS_MS[i]!;
}

/** What one attempt's result means for its delivery. */
export type AttemptVerdict =
  { status: 'delivered' } | { status: 'pending'; retryInMs: number } | { status: 'failed' };

/** A 2xx answer delivers; anything else (another status, no answer) is retried until `maxAttempts`. */
export function judgeAttempt(
  attempt: number,
  maxAttempts: number,
  httpStatus: number | null,
): AttemptVerdict {
  if (httpStatus !== null && httpStatus >= 200 && httpStatus < 300) return { status: 'delivered' };
  if (attempt >= maxAttempts) return { status: 'failed' };
  return { status: 'pending', retryInMs: retryDelayMs(attempt) };
}
