import { unstorableReason } from '../../common/input-safety.js';
import { badRequest, type Verdict } from './rejection.js';

/**
 * The relay's client endpoints: OpenAI's chat/completions, completions, embeddings and responses,
 * and Anthropic's messages. Where each goes upstream depends on the provider's kind (exchange.ts).
 */
export type Endpoint = 'chat' | 'completions' | 'embeddings' | 'responses' | 'messages';

/** Just enough validation for a clear 400; unknown fields pass through untouched (a shallow copy). */
export function validateBody(endpoint: Endpoint, body: unknown): Verdict<Record<string, unknown>> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return {
      ok: false,
      rejection: badRequest('The request body must be a JSON object', null, 'invalid_body'),
    };
  }
  const b = body as Record<string, unknown>;
  const problems: { param: string; message: string }[] = [];
  if (typeof b.model !== 'string' || b.model.trim() === '')
    problems.push({ param: 'model', message: 'model must be a non-empty string' });
  else if (b.model.length > 256)
    problems.push({ param: 'model', message: 'model must be at most 256 characters' });
  else if (unstorableReason(b.model))
    // `model` is stored in the request log (and used in metrics labels); message contents are not
    // stored and pass through to the upstream as they came (docs/relay.md).
    problems.push({ param: 'model', message: `model must not contain ${unstorableReason(b.model)}` });
  if (endpoint === 'chat') {
    if (!Array.isArray(b.messages) || b.messages.length === 0)
      problems.push({ param: 'messages', message: 'messages must be a non-empty array' });
    else if (b.messages.some((m) => m === null || typeof m !== 'object' || Array.isArray(m))) {
      problems.push({ param: 'messages', message: 'every element of messages must be an object' });
    }
  }
  if (endpoint === 'completions' && !(typeof b.prompt === 'string' || Array.isArray(b.prompt))) {
    problems.push({ param: 'prompt', message: 'prompt must be a string or an array' });
  }
  if (endpoint === 'embeddings' && !(typeof b.input === 'string' || Array.isArray(b.input))) {
    problems.push({ param: 'input', message: 'input must be a string or an array' });
  }
  if (endpoint === 'responses') {
    if (b.input !== undefined && !(typeof b.input === 'string' || Array.isArray(b.input)))
      problems.push({ param: 'input', message: 'input must be a string or an array' });
    if (
      b.previous_response_id !== undefined &&
      b.previous_response_id !== null &&
      (typeof b.previous_response_id !== 'string' || b.previous_response_id === '')
    )
      problems.push({
        param: 'previous_response_id',
        message: 'previous_response_id must be a non-empty string',
      });
    if (
      b.max_output_tokens !== undefined &&
      b.max_output_tokens !== null &&
      !(
        typeof b.max_output_tokens === 'number' &&
        Number.isSafeInteger(b.max_output_tokens) &&
        b.max_output_tokens > 0
      )
    )
      problems.push({ param: 'max_output_tokens', message: 'max_output_tokens must be a positive integer' });
  }
  if (endpoint === 'messages') {
    if (!Array.isArray(b.messages) || b.messages.length === 0)
      problems.push({ param: 'messages', message: 'messages must be a non-empty array' });
    else if (b.messages.some((m) => m === null || typeof m !== 'object' || Array.isArray(m)))
      problems.push({ param: 'messages', message: 'every element of messages must be an object' });
    if (typeof b.max_tokens !== 'number' || !Number.isSafeInteger(b.max_tokens) || b.max_tokens < 1)
      problems.push({ param: 'max_tokens', message: 'max_tokens must be a positive integer' });
  }
  if (b.stream !== undefined && typeof b.stream !== 'boolean')
    problems.push({ param: 'stream', message: 'stream must be a boolean' });
  if (problems.length > 0) {
    const message = problems.map((p) => p.message).join('; ');
    return { ok: false, rejection: badRequest(message, problems[0]!.param, 'validation_failed') };
  }
  return { ok: true, value: { ...b } };
}

/** Whether the client asked for server-sent events (embeddings never stream). */
export function wantsStream(endpoint: Endpoint, body: Record<string, unknown>): boolean {
  return endpoint !== 'embeddings' && body.stream === true;
}

/** What goes upstream: the client's body, plus `stream_options.include_usage` on streams (so usage can be charged). */
export interface UpstreamPayload {
  payload: string;
  /** true when Floodgate asked for usage on the client's behalf: the extra usage event is stripped. */
  injectedUsage: boolean;
}

/**
 * `raw`: the body's JSON text as the client sent it, when known; sent as it is whenever the body goes
 * upstream unchanged (no second serialisation, and numbers JSON can't hold exactly stay exact).
 */
export function upstreamPayload(
  body: Record<string, unknown>,
  stream: boolean,
  raw?: string,
): Verdict<UpstreamPayload> {
  if (!stream) return { ok: true, value: { payload: raw ?? JSON.stringify(body), injectedUsage: false } };
  const options = (body.stream_options ?? {}) as Record<string, unknown>;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    return {
      ok: false,
      rejection: badRequest('stream_options must be an object', 'stream_options', 'invalid_request'),
    };
  }
  if (options.include_usage === true)
    return { ok: true, value: { payload: raw ?? JSON.stringify(body), injectedUsage: false } };
  // No stream_options at all (the common stream): the client's text with the option appended, not a
  // second serialisation of the whole body (a long prompt's JSON.stringify sat before the upstream
  // request of every stream); its numbers stay exact, as an unchanged body's do.
  const payload =
    raw !== undefined && !Object.hasOwn(body, 'stream_options')
      ? appendMember(raw, '"stream_options":{"include_usage":true}')
      : null;
  return {
    ok: true,
    value: {
      payload: payload ?? JSON.stringify({ ...body, stream_options: { ...options, include_usage: true } }),
      injectedUsage: true,
    },
  };
}

/**
 * A JSON object's text with one more member (`"name":value`) before its closing brace; null when the
 * text does not end in one (not an object: the caller serialises instead).
 */
export function appendMember(json: string, member: string): string | null {
  let end = json.length - 1;
  while (end >= 0 && isJsonSpace(json.charCodeAt(end))) end--;
  if (end < 1 || json.charCodeAt(end) !== 0x7d /* } */) return null;
  let last = end - 1;
  while (last >= 0 && isJsonSpace(json.charCodeAt(last))) last--;
  if (last < 0) return null;
  // `{}`: the first member, no comma
  const comma = json.charCodeAt(last) === 0x7b /* { */ ? '' : ',';
  return `${json.slice(0, end)}${comma}${member}}`;
}

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}
