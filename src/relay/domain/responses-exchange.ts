import { parseUpstreamJson, upstreamClientError, upstreamUsage } from './outcome.js';
import type { Rejection, Verdict } from './rejection.js';
import { aliasJson } from './route-model.js';
import { sseData } from './sse-relay.js';
import { NO_USAGE, type StreamEvents, type UsageCounts } from './stream-events.js';
import type { UpstreamPayload } from './validation.js';

/**
 * OpenAI's Responses API (`POST /v1/responses`) on an OpenAI-compatible provider. The client's
 * body goes upstream as it came (no `stream_options`: a Responses stream reports its usage in its
 * `response.completed` event anyway), the answer and the stream's events come back unchanged — a
 * routed request's with the alias as `model` (JSON) or `response.model` (events). An `Exchange`
 * (exchange.ts registers it in its OPENAI table, which checks the shape; not imported here: a cycle).
 */
export const responsesExchange = {
  name: 'openai:responses',
  path: '/responses',
  payload: (body: Record<string, unknown>, _stream: boolean, raw?: string): Verdict<UpstreamPayload> => ({
    ok: true,
    value: { payload: raw ?? JSON.stringify(body), injectedUsage: false },
  }),
  usage: (text: string): UsageCounts => responsesUsage(upstreamUsage(text)),
  answer: (text: string, alias: string | null): string => (alias === null ? text : aliasJson(text, alias)),
  clientError: (status: number, text: string, apiKey: string): Rejection =>
    upstreamClientError(status, parseUpstreamJson(text), apiKey),
  stream: (_injectedUsage: boolean, alias: string | null): StreamEvents => new ResponsesStreamEvents(alias),
  createdId: (text: string): string | null => responseIdOf(text),
};

/** The Responses API's usage: `input_tokens` (cached included), `output_tokens`, `input_tokens_details.cached_tokens`. */
export function responsesUsage(usage: unknown): UsageCounts {
  if (usage === null || typeof usage !== 'object') return NO_USAGE;
  const u = usage as {
    input_tokens?: unknown;
    output_tokens?: unknown;
    input_tokens_details?: { cached_tokens?: unknown } | null;
  };
  const details = u.input_tokens_details;
  return {
    prompt: count(u.input_tokens),
    completion: count(u.output_tokens),
    cached: count(details && typeof details === 'object' ? details.cached_tokens : undefined),
  };
}

/** The `id` of a Responses JSON answer (`resp_…`); null when it has none (or the text is not JSON). */
export function responseIdOf(text: string): string | null {
  const parsed = parseUpstreamJson(text) as { id?: unknown } | null;
  return parsed !== null && !Array.isArray(parsed) ? usableId(parsed.id) : null;
}

/** Event types whose `response.usage` is the stream's usage (the last one seen wins). */
const FINAL_EVENTS = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/**
 * A Responses API stream (`event: response.created` … `response.output_text.delta` …
 * `response.completed`): every event passes through unchanged (a routed request's with the alias as
 * `response.model`), while the created response's id, the delivered text (`delta` of
 * `response.output_text.delta`: an estimate when a cut stream never reports usage) and the final
 * usage are read.
 */
export class ResponsesStreamEvents implements StreamEvents {
  usage: UsageCounts | null = null;
  deliveredChars = 0;
  /** The response's id, from the first event that carries `response.id` (`response.created`). */
  createdId: string | null = null;

  constructor(private readonly alias: string | null = null) {}

  event(event: string, separator: string): string {
    const data = sseData(event);
    if (data === null || !data.startsWith('{')) return event + separator;
    let parsed: {
      type?: unknown;
      delta?: unknown;
      response?: { id?: unknown; model?: unknown; usage?: unknown } | null;
    };
    try {
      parsed = JSON.parse(data) as typeof parsed;
    } catch {
      return event + separator;
    }
    if (parsed === null || typeof parsed !== 'object') return event + separator;
    if (parsed.type === 'response.output_text.delta' && typeof parsed.delta === 'string')
      this.deliveredChars += parsed.delta.length;
    const response = parsed.response;
    if (response === null || typeof response !== 'object') return event + separator;
    this.createdId ??= usableId(response.id);
    if (typeof parsed.type === 'string' && FINAL_EVENTS.has(parsed.type) && response.usage)
      this.usage = responsesUsage(response.usage);
    if (this.alias === null || typeof response.model !== 'string' || response.model === this.alias)
      return event + separator;
    response.model = this.alias;
    return withData(event, JSON.stringify(parsed)) + separator;
  }

  end(): string {
    return '';
  }
}

/** The event with its data replaced by `data` (one line; its other lines — event:, id: — kept in place). */
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

/** A response id Floodgate remembers: a short printable string (at most 256 ASCII characters, no spaces). */
export function usableId(id: unknown): string | null {
  return typeof id === 'string' && id.length > 0 && id.length <= 256 && /^[\x21-\x7e]+$/.test(id) ? id : null;
}

function count(n: unknown): number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
}
