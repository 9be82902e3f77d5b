import type { Priority } from '../../common/principal.js';
import type { KeyRefusal } from '../../key-pool/key-pool.types.js';
import { rejection, type Rejection } from './rejection.js';

/** How KeyPool's refusal reads to the client: no usable keys → 503; cooling / at RPM·TPM / saturated → 429. */
export function refusalRejection(refusal: KeyRefusal): Rejection {
  if (refusal.kind === 'no_usable_keys') {
    return rejection(503, 'service_unavailable_error', refusal.code, refusal.message, {
      retryAfterSeconds: 30,
      shouldRetry: false,
    });
  }
  return rejection(429, 'rate_limit_error', refusal.code, refusal.message, {
    retryAfterSeconds: Math.max(1, refusal.retryAfterMs / 1000),
    shouldRetry: true,
  });
}

/**
 * A refusal that waiting can't fix within the priority's timeout is answered at once (null: worth
 * waiting). Cooldowns and RPM/TPM windows know when they end; a saturated key frees whenever a request ends.
 */
export function hopelessRefusal(refusal: KeyRefusal, timeoutMs: number): Rejection | null {
  if (refusal.kind === 'no_usable_keys') return refusalRejection(refusal);
  if ((refusal.kind === 'cooling' || refusal.kind === 'rate_limited') && refusal.retryAfterMs > timeoutMs) {
    return refusalRejection(refusal);
  }
  return null;
}

/** Where a request that could not be admitted at once goes (QUEUE_FULL_POLICY applies past QUEUE_MAX_PER_PROVIDER). */
export type QueuePlan =
  { kind: 'queue' } | { kind: 'passthrough' } | { kind: 'reject'; rejection: Rejection };

export function queuePlan(
  waiting: number,
  maxPerProvider: number,
  fullPolicy: 'reject' | 'passthrough',
  providerName: string,
): QueuePlan {
  if (waiting < maxPerProvider) return { kind: 'queue' };
  if (fullPolicy === 'passthrough') return { kind: 'passthrough' };
  return {
    kind: 'reject',
    rejection: rejection(
      503,
      'queue_full_error',
      'queue_full',
      `The queue for provider ${providerName} is full (${waiting} waiting); retry shortly`,
      { retryAfterSeconds: 2, shouldRetry: true },
    ),
  };
}

export const storeUnavailable = (): Rejection =>
  rejection(
    503,
    'service_unavailable_error',
    'dependency_unavailable',
    'The state store did not answer; retry shortly',
    {
      retryAfterSeconds: 2,
      shouldRetry: true,
    },
  );

export const queueTimeout = (waitedMs: number, providerName: string, priority: Priority): Rejection =>
  rejection(
    429,
    'rate_limit_error',
    'queue_timeout',
    `Waited ${Math.round(waitedMs / 1000)} s for provider ${providerName} capacity at priority ${priority}; retry later`,
    { retryAfterSeconds: 1, shouldRetry: true },
  );

export const passthroughTimeout = (retryAfterMs: number): Rejection =>
  rejection(
    429,
    'rate_limit_error',
    'queue_timeout',
    'No upstream capacity within the wait timeout; retry later',
    {
      retryAfterSeconds: Math.max(1, retryAfterMs / 1000),
      shouldRetry: true,
    },
  );
