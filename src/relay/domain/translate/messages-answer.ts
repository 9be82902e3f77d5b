import { cachedPromptTokens, parseUpstreamJson, upstreamUsage, type UpstreamJson } from '../outcome.js';
import { NO_USAGE, type UsageCounts } from '../stream-events.js';

/**
 * An OpenAI chat.completion as an Anthropic message, for `/v1/messages` on an OpenAI-compatible
 * provider (docs/translation.md, "The other way"). Pure.
 */

type Json = Record<string, unknown>;

/** An OpenAI finish_reason as an Anthropic stop_reason. */
export function stopReason(finish: unknown): string {
  switch (finish) {
    case 'length':
      return 'max_tokens';
    case 'tool_calls':
    case 'function_call':
      return 'tool_use';
    case 'content_filter':
      return 'refusal';
    default: // stop
      return 'end_turn';
  }
}

/** OpenAI usage as the dialect-neutral counts. */
export function chatUsageCounts(usage: UpstreamJson['usage'] | null | undefined): UsageCounts {
  if (!usage || typeof usage !== 'object') return NO_USAGE;
  return {
    prompt: count(usage.prompt_tokens),
    completion: count(usage.completion_tokens),
    cached: cachedPromptTokens(usage),
  };
}

/** Anthropic's usage for the counts: input_tokens leaves the cache reads out, as Anthropic does. */
export function anthropicUsageOf(counts: UsageCounts): Json {
  return {
    input_tokens: Math.max(0, counts.prompt - counts.cached),
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: counts.cached,
    output_tokens: counts.completion,
  };
}

/** The token counts of a chat.completion (or of an error carrying usage). */
export function chatCompletionUsage(text: string): UsageCounts {
  return chatUsageCounts(upstreamUsage(text));
}

/** A tool call's `arguments` (a JSON string) as a tool_use `input`: {} when it is not a JSON object. */
export function toolInput(args: unknown): Json {
  if (typeof args !== 'string' || args === '') return {};
  try {
    const parsed: unknown = JSON.parse(args);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Json) : {};
  } catch {
    return {};
  }
}

/**
 * The Anthropic message for a chat.completion (its first choice). `alias`: a routed request's model
 * name. Text that is not a chat.completion is returned as it came.
 */
export function chatCompletionToMessage(text: string, alias: string | null): string {
  const completion = parseUpstreamJson(text) as Json | null;
  const choices = completion?.choices;
  if (!completion || !Array.isArray(choices)) return text;
  const choice = (choices[0] ?? {}) as Json;
  const message = (choice.message ?? {}) as Json;
  const content: Json[] = [];
  if (typeof message.content === 'string' && message.content !== '')
    content.push({ type: 'text', text: message.content });
  else if (typeof message.refusal === 'string' && message.refusal !== '')
    content.push({ type: 'text', text: message.refusal });
  if (Array.isArray(message.tool_calls))
    for (const call of message.tool_calls as unknown[]) {
      if (!call || typeof call !== 'object') continue;
      const c = call as Json;
      const fn = (c.function ?? {}) as Json;
      content.push({ type: 'tool_use', id: c.id, name: fn.name, input: toolInput(fn.arguments) });
    }
  return JSON.stringify({
    id: typeof completion.id === 'string' ? completion.id : 'msg_translated',
    type: 'message',
    role: 'assistant',
    model: alias ?? completion.model,
    content,
    stop_reason: stopReason(choice.finish_reason),
    stop_sequence: null,
    usage: anthropicUsageOf(chatUsageCounts(completion.usage as UpstreamJson['usage'])),
  });
}

function count(n: unknown): number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
}
