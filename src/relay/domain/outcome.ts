import type { KeyOutcome } from '../../key-pool/key-pool.types.js';
import type { Rejection } from './rejection.js';
import { failureOutcome, type UpstreamFailure } from './retry-table.js';

/** The parts of an upstream JSON answer the relay reads. */
export interface UpstreamJson {
  usage?: { prompt_tokens?: number; completion_tokens?: number };
  error?: { message?: string; code?: string; type?: string; param?: string };
}

export function parseUpstreamJson(text: string): UpstreamJson | null {
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === 'object' ? (value as UpstreamJson) : null;
  } catch {
    return null;
  }
}

/**
 * An upstream client error (400, 404, 422…) passed on in the one error shape, the upstream's words
 * kept — except its credential, should it echo it.
 */
export function upstreamClientError(status: number, parsed: UpstreamJson | null, apiKey: string): Rejection {
  const upstreamMessage =
    typeof parsed?.error?.message === 'string'
      ? parsed.error.message.slice(0, 2000)
      : `Provider answered ${status}`;
  return {
    status,
    type: 'invalid_request_error',
    code: String(parsed?.error?.code ?? 'upstream_rejected_request'),
    message: apiKey ? upstreamMessage.split(apiKey).join('[redacted]') : upstreamMessage,
    param: parsed?.error?.param ?? null,
    headers: { 'x-should-retry': 'false' },
  };
}

/** What KeyPool learns from a stream once it is over: delivered, cut by the client, or cut upstream. */
export function streamKeyOutcome(
  failure: UpstreamFailure | null,
  clientGone: boolean,
  tokens: number,
): KeyOutcome {
  return {
    status: failure && !clientGone ? undefined : 200,
    error: clientGone ? 'aborted' : failure ? failureOutcome(failure) : undefined,
    tokens,
  };
}

/** The last event of a stream the upstream cut short after it started. */
export function streamInterruptedEvent(requestId: string): string {
  const error = {
    error: {
      type: 'upstream_error',
      code: 'upstream_stream_interrupted',
      message: 'The upstream stream ended unexpectedly',
      param: null,
      request_id: requestId,
    },
  };
  return `data: ${JSON.stringify(error)}\n\n`;
}

/**
 * The `outcome` label of floodgate_relay_requests_total for an error answer, read from the answer
 * itself (its error type and code), so the three 503s stay apart: queue_full (the provider's queue
 * is full), no_usable_keys (no upstream key can serve), dependency_unavailable (Postgres or Redis
 * unreachable); any other 503 is `unavailable`.
 */
export function outcomeOf(status: number, type: string, code: string): string {
  if (status === 499) return 'canceled';
  switch (type) {
    case 'rate_limit_error':
      return 'rate_limited';
    case 'queue_full_error':
      return 'queue_full';
    case 'service_unavailable_error':
      if (code === 'dependency_unavailable') return 'dependency_unavailable';
      if (code === 'no_usable_upstream_keys') return 'no_usable_keys';
      return 'unavailable';
    case 'upstream_timeout_error':
      return 'upstream_timeout';
    case 'upstream_error':
      return 'upstream_error';
    default:
      return status >= 500 ? 'error' : 'client_error';
  }
}
