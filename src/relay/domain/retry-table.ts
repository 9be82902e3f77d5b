import type { KeyOutcome } from '../../key-pool/key-pool.types.js';
import { clientClosed, rejection, type Rejection } from './rejection.js';

/** How a request to the upstream can fail before an answer (upstream-client classifies transport errors). */
export type UpstreamFailure = 'connect' | 'timeout' | 'aborted' | 'protocol' | 'refused_address';

/** What one attempt produced: an HTTP status, or a transport failure. */
export type Observed =
  { status: number; retryAfter?: string | string[] | undefined } | { failure: UpstreamFailure };

export interface AttemptContext {
  /** 1 for the first attempt, 2 for the retry: a client request goes upstream at most twice (without a route). */
  attempt: number;
  /**
   * Attempts allowed in all: 2 without a route (one retry on another key, the default); a route's
   * `max_attempts` with one (each retry on another target).
   */
  maxAttempts?: number;
  /** A routed request: a timeout before the first byte also moves on (to the next target). */
  routed?: boolean;
  /** The client has gone. */
  clientGone: boolean;
  providerName: string;
  /** The provider's timeout_ms, quoted in the 504. */
  timeoutMs: number;
}

/**
 * `respond`: the answer goes to the client as it is (2xx, other 4xx). `retry`: try once more on
 * another key that is free now, else answer `rejection`. `fail`: answer `rejection`.
 */
export type RetryDecision = { action: 'respond' } | { action: 'retry' | 'fail'; rejection: Rejection };

/** The retry table of docs/relay.md ("Outcomes, retries and errors"), one branch per row. */
export function retryDecision(observed: Observed, ctx: AttemptContext): RetryDecision {
  const retryOr = (otherwise: Rejection): RetryDecision => ({
    action: ctx.attempt < (ctx.maxAttempts ?? 2) ? 'retry' : 'fail',
    rejection: otherwise,
  });
  const provider = ctx.providerName;
  if ('failure' in observed) {
    if (observed.failure === 'aborted' || ctx.clientGone)
      return { action: 'fail', rejection: clientClosed() };
    if (observed.failure === 'timeout') {
      const timedOut = rejection(
        504,
        'upstream_timeout_error',
        'upstream_timeout',
        `Provider ${provider} did not answer within ${ctx.timeoutMs} ms`,
        { shouldRetry: true },
      );
      // Without a route the same provider would be as slow again: not retried. With one, the next target.
      return ctx.routed ? retryOr(timedOut) : { action: 'fail', rejection: timedOut };
    }
    const code = observed.failure === 'refused_address' ? 'upstream_address_refused' : 'upstream_unreachable';
    return retryOr(
      rejection(502, 'upstream_error', code, `Could not reach provider ${provider}`, { shouldRetry: true }),
    );
  }
  const status = observed.status;
  // 1xx/3xx are not answers an OpenAI-compatible API gives: never pass a redirect on to the client.
  const unexpected = status < 200 || (status >= 300 && status < 400);
  if (status === 429) {
    const retryAfter = Number(observed.retryAfter);
    return retryOr(
      rejection(
        429,
        'rate_limit_error',
        'upstream_rate_limited',
        `Provider ${provider} is rate limiting every available key; retry later`,
        {
          retryAfterSeconds: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 1,
          shouldRetry: true,
        },
      ),
    );
  }
  if (unexpected) {
    return retryOr(
      rejection(
        502,
        'upstream_error',
        'upstream_unexpected_status',
        `Provider ${provider} answered ${status}`,
        {
          shouldRetry: false,
        },
      ),
    );
  }
  if (status === 401 || status === 403) {
    return retryOr(
      rejection(
        502,
        'upstream_error',
        'upstream_credentials_rejected',
        `Provider ${provider} rejected the gateway's upstream credentials`,
        { shouldRetry: false },
      ),
    );
  }
  if (status >= 500) {
    return retryOr(
      rejection(502, 'upstream_error', 'upstream_error', `Provider ${provider} answered ${status}`, {
        shouldRetry: true,
      }),
    );
  }
  return { action: 'respond' };
}

/** The transport failure as KeyPool's outcome records it (a refused address counts as a connect failure). */
export function failureOutcome(failure: UpstreamFailure): KeyOutcome['error'] {
  return failure === 'refused_address' ? 'connect' : failure;
}

/**
 * An attempt's outcome as the request log's attempt_log records it (AttemptRecord.outcome): ok |
 * rate_limited (429) | client_error (other 4xx the client caused) | upstream_error (5xx, 401/403 —
 * the gateway's credentials —, unexpected statuses) | timeout | connect_error | canceled.
 */
export function attemptOutcome(observed: Observed): string {
  if ('failure' in observed) {
    if (observed.failure === 'timeout') return 'timeout';
    if (observed.failure === 'aborted') return 'canceled';
    return 'connect_error';
  }
  const status = observed.status;
  if (status >= 200 && status < 300) return 'ok';
  if (status === 429) return 'rate_limited';
  if (status >= 400 && status < 500 && status !== 401 && status !== 403) return 'client_error';
  return 'upstream_error';
}

/**
 * What a route target's circuit breaker is told about an attempt: 5xx, timeouts and connection
 * errors are failures, a 2xx a success; 429s (cooldown and retreat handle them), the client's 4xx
 * and a client that went away tell it nothing (null). A 2xx stream reports when it ends instead.
 */
export function breakerOutcome(observed: Observed): 'success' | 'failure' | null {
  if ('failure' in observed) return observed.failure === 'aborted' ? null : 'failure';
  const status = observed.status;
  if (status >= 200 && status < 300) return 'success';
  if (status >= 500) return 'failure';
  return null;
}
