import type { Rejection } from '../rejection.js';
import { NO_USAGE, type UsageCounts } from '../stream-events.js';

/**
 * An Anthropic Messages answer as an OpenAI chat.completion (docs/translation.md): text blocks
 * joined into `content`, tool_use blocks as `tool_calls`, stop_reason as `finish_reason`, usage in
 * OpenAI's names. Pure.
 */

type Json = Record<string, unknown>;

/** Anthropic's usage object (message, message_start, message_delta). */
export interface AnthropicUsage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
}

/** An Anthropic stop_reason as an OpenAI finish_reason. */
export function finishReason(stopReason: unknown): string {
  switch (stopReason) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default: // end_turn, stop_sequence, pause_turn
      return 'stop';
  }
}

/**
 * Anthropic usage as the dialect-neutral counts: every input token is a prompt token (cache reads
 * and cache writes included, as OpenAI counts cached tokens in `prompt_tokens`); cache reads are the
 * cached ones.
 */
export function anthropicUsageCounts(usage: AnthropicUsage | null | undefined): UsageCounts {
  if (!usage || typeof usage !== 'object') return NO_USAGE;
  const cached = count(usage.cache_read_input_tokens);
  return {
    prompt: count(usage.input_tokens) + cached + count(usage.cache_creation_input_tokens),
    completion: count(usage.output_tokens),
    cached,
  };
}

/** OpenAI's usage object for the counts. */
export function openAiUsageOf(counts: UsageCounts): Json {
  return {
    prompt_tokens: counts.prompt,
    completion_tokens: counts.completion,
    total_tokens: counts.prompt + counts.completion,
    prompt_tokens_details: { cached_tokens: counts.cached },
  };
}

/** The token counts of an Anthropic JSON answer (or error: none). */
export function messagesUsage(text: string): UsageCounts {
  const parsed = parse(text);
  return anthropicUsageCounts(parsed?.usage as AnthropicUsage | undefined);
}

/**
 * The chat.completion for an Anthropic message. `alias`: a routed request's model name (else the
 * model the upstream names). Text that is not an Anthropic message is returned as it came.
 */
export function messageToChatCompletion(text: string, alias: string | null, now = Date.now()): string {
  const message = parse(text);
  if (!message || !Array.isArray(message.content)) return text;
  const texts: string[] = [];
  const toolCalls: Json[] = [];
  for (const block of message.content as unknown[]) {
    if (!block || typeof block !== 'object') continue;
    const b = block as Json;
    if (b.type === 'text' && typeof b.text === 'string') texts.push(b.text);
    else if (b.type === 'tool_use')
      toolCalls.push({
        id: b.id,
        type: 'function',
        function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) },
      });
    // thinking, redacted_thinking and server-tool blocks have no chat.completion form: left out
  }
  const chatMessage: Json = {
    role: 'assistant',
    content: texts.length > 0 ? texts.join('') : null,
    refusal: null,
  };
  if (toolCalls.length > 0) chatMessage.tool_calls = toolCalls;
  return JSON.stringify({
    id: typeof message.id === 'string' ? message.id : 'chatcmpl-translated',
    object: 'chat.completion',
    created: Math.floor(now / 1000),
    model: alias ?? message.model,
    choices: [
      { index: 0, message: chatMessage, logprobs: null, finish_reason: finishReason(message.stop_reason) },
    ],
    usage: openAiUsageOf(anthropicUsageCounts(message.usage as AnthropicUsage | undefined)),
  });
}

/**
 * An Anthropic 4xx (`{"type": "error", "error": {"type", "message"}}`) as the client's error: the
 * status kept, type invalid_request_error (the one error shape's type for a client error), code the
 * Anthropic error type (`invalid_request_error`, `not_found_error`, `request_too_large`…), the
 * upstream's message kept (its credential redacted should it echo it).
 */
export function messagesClientError(status: number, text: string, apiKey: string): Rejection {
  const error = parse(text)?.error as Json | undefined;
  const raw =
    error && typeof error.message === 'string' ? error.message.slice(0, 2000) : `Provider answered ${status}`;
  const code =
    error && typeof error.type === 'string' && error.type !== ''
      ? error.type
      : error && typeof error.code === 'string'
        ? error.code
        : 'upstream_rejected_request';
  return {
    status,
    type: 'invalid_request_error',
    code,
    message: apiKey ? raw.split(apiKey).join('[redacted]') : raw,
    param: error && typeof error.param === 'string' ? error.param : null,
    headers: { 'x-should-retry': 'false' },
  };
}

function count(n: unknown): number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
}

function parse(text: string): Json | null {
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : null;
  } catch {
    return null;
  }
}
