import type { KeyOutcome } from '../../key-pool/key-pool.types.js';
import type { Rejection } from './rejection.js';
import { failureOutcome, type UpstreamFailure } from './retry-table.js';

/** The parts of an upstream JSON answer the relay reads. */
export interface UpstreamJson {
  usage?: {
    prompt_tokens?: number;
    completion_tokens?: number;
    /** OpenAI: `cached_tokens` of the prompt were served from the upstream's prompt cache. */
    prompt_tokens_details?: { cached_tokens?: number } | null;
  };
  error?: { message?: string; code?: string; type?: string; param?: string };
}

/** The prompt tokens an upstream usage reports as cached (`prompt_tokens_details.cached_tokens`); 0 when absent or not a count. */
export function cachedPromptTokens(usage: UpstreamJson['usage'] | null | undefined): number {
  const n: unknown = usage?.prompt_tokens_details?.cached_tokens;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
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
 * The `usage` of a whole upstream JSON answer, without parsing the whole answer when it need not:
 * `usage` comes last in OpenAI-style answers, so the object after the last `"usage":` is parsed
 * alone when the scan of what follows it (strings skipped) shows it is a member of the top-level
 * object. Anything else (a nested `usage` after it, a non-object usage, no `usage`) falls back to
 * parsing the whole text, as does a text that is not valid JSON in the usage object. An embeddings
 * answer (thousands of floats before `usage`) is the case this exists for.
 */
export function upstreamUsage(text: string): UpstreamJson['usage'] | undefined {
  const at = text.lastIndexOf('"usage"');
  if (at > 0) {
    const fast = usageAt(text, at);
    if (fast !== FALLBACK) return fast as UpstreamJson['usage'];
  }
  return parseUpstreamJson(text)?.usage;
}

const FALLBACK = Symbol('fallback');

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** The value after `"usage":` at `at`, when it is an object that ends the top-level object; FALLBACK otherwise. */
function usageAt(text: string, at: number): unknown {
  let i = at + 7;
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== 0x3a /* : */) return FALLBACK;
  i++;
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== 0x7b /* { */) return FALLBACK;
  const start = i;
  // The usage object's end, then the rest: it must close exactly the top-level object and end there.
  let depth = 0;
  let end = -1;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) {
      depth--;
      if (end === -1 && depth === 0) end = i + 1;
      else if (depth === -1) {
        if (c !== 0x7d) return FALLBACK;
        for (let j = i + 1; j < text.length; j++) if (!isSpace(text.charCodeAt(j))) return FALLBACK;
        // The key must be a member name of the top-level object: preceded by `{` or `,`.
        let k = at - 1;
        while (k >= 0 && isSpace(text.charCodeAt(k))) k--;
        const before = text.charCodeAt(k);
        if (before !== 0x2c && before !== 0x7b) return FALLBACK;
        try {
          return JSON.parse(text.slice(start, end)) as unknown;
        } catch {
          return FALLBACK;
        }
      }
    }
  }
  return FALLBACK;
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
