import type { Rejection } from './rejection.js';
import { aliasJson } from './route-model.js';
import { sseData } from './sse-relay.js';
import { NO_USAGE, type StreamEvents, type UsageCounts } from './stream-events.js';
import type { UpstreamPayload } from './validation.js';
import type { Verdict } from './rejection.js';

/**
 * `anthropic:messages`: the client's Anthropic Messages API request (POST /v1/messages) on an
 * anthropic-kind provider, passed through natively — the body as the client sent it to
 * `<base_url>/messages`, the answer (JSON or SSE, `event:` lines included) back unchanged except
 * for a route's alias as `model`. Pure: no I/O.
 *
 * Usage (docs/relay.md "Anthropic providers and the Messages API"): Anthropic reports
 * `input_tokens` WITHOUT the prompt-cache tokens, which come apart as `cache_read_input_tokens`
 * and `cache_creation_input_tokens`. Floodgate's prompt tokens are all three summed; its cached
 * tokens are the cache reads (priced at `cached_input_per_mtok`); cache writes are priced as
 * ordinary input (`input_per_mtok`). Streams report them in `message_start` (`message.usage`) and
 * the output tokens, cumulatively, in `message_delta` (`usage.output_tokens`).
 */

/** Anthropic's usage object (JSON answers' `usage`, `message_start`'s `message.usage`, `message_delta`'s `usage`). */
export interface AnthropicUsage {
  input_tokens?: unknown;
  output_tokens?: unknown;
  cache_read_input_tokens?: unknown;
  cache_creation_input_tokens?: unknown;
}

/** Anthropic's error body: `{"type":"error","error":{"type":"…","message":"…"}}`. */
interface AnthropicErrorBody {
  error?: { type?: unknown; message?: unknown };
}

function nonNegative(n: unknown): number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/** Anthropic usage as Floodgate counts it: prompt = input + cache reads + cache writes; cached = cache reads. */
export function anthropicUsage(usage: AnthropicUsage | null | undefined): UsageCounts {
  if (!usage || typeof usage !== 'object') return NO_USAGE;
  const read = nonNegative(usage.cache_read_input_tokens);
  return {
    prompt: nonNegative(usage.input_tokens) + read + nonNegative(usage.cache_creation_input_tokens),
    completion: nonNegative(usage.output_tokens),
    cached: read,
  };
}

function parseObject(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

/** The body goes upstream as the client sent it (Anthropic streams always carry usage: nothing to inject). */
export function anthropicPayload(
  body: Record<string, unknown>,
  _stream: boolean,
  raw?: string,
): Verdict<UpstreamPayload> {
  return { ok: true, value: { payload: raw ?? JSON.stringify(body), injectedUsage: false } };
}

/**
 * An upstream 4xx (not 401/403/429) in the one error shape with Anthropic's words: `code` is
 * Anthropic's error type (`invalid_request_error`, `not_found_error`, `request_too_large`…), the
 * message its message (the upstream credential never, should it be echoed).
 */
export function anthropicClientError(status: number, text: string, apiKey: string): Rejection {
  const error = (parseObject(text) as AnthropicErrorBody | null)?.error;
  const upstreamMessage =
    typeof error?.message === 'string' ? error.message.slice(0, 2000) : `Provider answered ${status}`;
  const code = typeof error?.type === 'string' && error.type !== '' ? error.type.slice(0, 64) : null;
  return {
    status,
    type: 'invalid_request_error',
    code: code ?? 'upstream_rejected_request',
    message: apiKey ? upstreamMessage.split(apiKey).join('[redacted]') : upstreamMessage,
    param: null,
    headers: { 'x-should-retry': 'false' },
  };
}

/** One SSE event (without its separator) with its data line replaced; the other lines (`event:`, `id:`) stay. */
function withData(event: string, data: string): string {
  const newline = event.includes('\r\n') ? '\r\n' : '\n';
  const out: string[] = [];
  let placed = false;
  for (const line of event.split(/\r?\n/)) {
    if (!line.startsWith('data:')) out.push(line);
    else if (!placed) {
      out.push(`data: ${data}`);
      placed = true;
    }
  }
  return out.join(newline);
}

/**
 * A Messages API stream: events pass through unchanged (`event:` lines included; a routed request's
 * `message_start` with the alias as `message.model`), while the usage is read from `message_start`
 * (`message.usage`: input, cache reads and writes, the first output count) and `message_delta`
 * (`usage.output_tokens`, cumulative; input counts too when it repeats them). Delivered characters
 * (text, thinking and tool-input deltas) estimate the output of a stream cut before its usage came.
 */
export class AnthropicStreamEvents implements StreamEvents {
  usage: UsageCounts | null = null;
  deliveredChars = 0;
  private raw: AnthropicUsage = {};

  constructor(private readonly alias: string | null = null) {}

  event(event: string, separator: string): string {
    return this.read(event) + separator;
  }

  end(): string {
    return '';
  }

  private read(event: string): string {
    if (
      !event.includes('message_start') &&
      !event.includes('message_delta') &&
      !event.includes('content_block_delta')
    )
      return event;
    const data = sseData(event);
    if (data === null) return event;
    const parsed = parseObject(data);
    if (!parsed) return event;
    switch (parsed.type) {
      case 'content_block_delta': {
        const delta = parsed.delta as Record<string, unknown> | null | undefined;
        const text = delta?.text ?? delta?.thinking ?? delta?.partial_json;
        if (typeof text === 'string') this.deliveredChars += text.length;
        return event;
      }
      case 'message_start': {
        const message = parsed.message as Record<string, unknown> | null | undefined;
        if (!message || typeof message !== 'object') return event;
        this.take(message.usage as AnthropicUsage | undefined);
        if (this.alias === null || typeof message.model !== 'string' || message.model === this.alias)
          return event;
        message.model = this.alias;
        return withData(event, JSON.stringify(parsed));
      }
      case 'message_delta':
        this.take(parsed.usage as AnthropicUsage | undefined);
        return event;
      default:
        return event;
    }
  }

  /** Counts reported later replace earlier ones (message_delta's are cumulative). */
  private take(usage: AnthropicUsage | null | undefined): void {
    if (!usage || typeof usage !== 'object') return;
    for (const field of [
      'input_tokens',
      'output_tokens',
      'cache_read_input_tokens',
      'cache_creation_input_tokens',
    ] as const) {
      if (typeof usage[field] === 'number') this.raw[field] = usage[field];
    }
    this.usage = anthropicUsage(this.raw);
  }
}

/**
 * The last event of a stream the upstream cut short, as an Anthropic client expects it: an `error`
 * event (Anthropic's SDKs throw on it) carrying the one error shape with `"type": "error"`.
 */
export function anthropicInterruptedEvent(requestId: string): string {
  const error = {
    type: 'error',
    error: {
      type: 'upstream_error',
      code: 'upstream_stream_interrupted',
      message: 'The upstream stream ended unexpectedly',
      param: null,
      request_id: requestId,
    },
  };
  return `event: error\ndata: ${JSON.stringify(error)}\n\n`;
}

/** A JSON answer's usage (its top-level `usage`). */
export function anthropicJsonUsage(text: string): UsageCounts {
  return anthropicUsage(parseObject(text)?.usage as AnthropicUsage | undefined);
}

/** A JSON answer with a route's alias as its `model` (unchanged without one). */
export function anthropicAnswer(text: string, alias: string | null): string {
  return alias === null ? text : aliasJson(text, alias);
}

/**
 * The `anthropic:messages` exchange (registered in exchange.ts's ANTHROPIC table; typed against
 * `Exchange` there, which imports this file).
 */
export const ANTHROPIC_MESSAGES = {
  name: 'anthropic:messages',
  path: '/messages',
  payload: anthropicPayload,
  usage: anthropicJsonUsage,
  answer: anthropicAnswer,
  clientError: anthropicClientError,
  stream: (_injectedUsage: boolean, alias: string | null): StreamEvents => new AnthropicStreamEvents(alias),
  interrupted: anthropicInterruptedEvent,
} as const;
