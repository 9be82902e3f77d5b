/**
 * One upstream attempt of a relayed request, as the request log keeps it (`request_log.attempt_log`,
 * a JSON array, oldest first). A request served by its first attempt has one entry.
 */
export interface AttemptRecord {
  /** 1-based. */
  attempt: number;
  providerId: string;
  /** The model the upstream was sent (the route target's model; the client's model without a route). */
  model: string;
  /** The upstream key used; null when no key was leased for the attempt. */
  keyId: string | null;
  /** The upstream's HTTP status; null when none arrived (connect error, timeout). */
  status: number | null;
  /**
   * ok | upstream_error (5xx) | rate_limited (429) | timeout | connect_error | client_error (4xx) |
   * breaker_open (skipped: the target's breaker was open) | no_capacity (skipped: no key free now).
   */
  outcome: string;
  /** Time spent on the attempt (ms, integer). */
  ms: number;
}
