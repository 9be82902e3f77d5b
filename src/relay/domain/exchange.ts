import type { ProviderKind } from '../../key-pool/key-pool.types.js';
import { ANTHROPIC_MESSAGES, anthropicInterruptedEvent } from './anthropic-exchange.js';
import {
  cachedPromptTokens,
  parseUpstreamJson,
  upstreamClientError,
  upstreamUsage,
  type UpstreamJson,
} from './outcome.js';
import type { Rejection, Verdict } from './rejection.js';
import { NO_USAGE, type StreamEvents, type UsageCounts } from './stream-events.js';
import { aliasJson } from './route-model.js';
import { responsesExchange } from './responses-exchange.js';
import { OpenAiStreamEvents } from './sse-relay.js';
import {
  AnthropicChatStream,
  anthropicChatPayload,
  chatCompletionToMessage,
  chatCompletionUsage,
  OpenAiMessagesStream,
  openAiMessagesPayload,
  messageToChatCompletion,
  messagesClientError,
  messagesUsage,
} from './translate/index.js';
import { upstreamPayload, type Endpoint, type UpstreamPayload } from './validation.js';

export { NO_USAGE, type StreamEvents, type UsageCounts };

/**
 * How one client endpoint talks to one kind of provider: where the request goes, what body it
 * carries, how the answer is read (usage) and given to the client (as it came, with a route's
 * alias, or translated). Pure: no I/O. One per (endpoint, provider kind) pair that can be served.
 */
export interface Exchange {
  /** For logs and tests: `openai:chat`, `anthropic:messages`, `anthropic:chat` (translated)… */
  readonly name: string;
  /** The path under the provider's base_url (`/chat/completions`, `/messages`…). */
  readonly path: string;
  /**
   * The upstream body from the client's validated body (its `model` already the one to send).
   * `raw`: the client's JSON text, sent as it is when the body goes upstream unchanged.
   */
  payload(body: Record<string, unknown>, stream: boolean, raw?: string): Verdict<UpstreamPayload>;
  /** The token counts of a whole JSON answer (a 2xx, or an error that carries usage). */
  usage(text: string): UsageCounts;
  /** The client's body for a 2xx JSON answer: as it came, with `alias` as its model, or translated. */
  answer(text: string, alias: string | null): string;
  /** An upstream 4xx (not 401/403/429) as the client's error, the upstream's words kept (its credential never). */
  clientError(status: number, text: string, apiKey: string): Rejection;
  /** A 200 stream's reader. `injectedUsage`: Floodgate asked for usage on the client's behalf (drop the extra event). */
  stream(injectedUsage: boolean, alias: string | null): StreamEvents;
  /**
   * An endpoint whose answers are stored upstream and fetched again by id (the Responses API): the
   * id a 2xx JSON answer created, so the relay remembers which provider and key hold it.
   */
  createdId?(text: string): string | null;
  /** The last event of a 200 stream the upstream cut short, in the client's dialect (default: outcome.ts streamInterruptedEvent). */
  interrupted?(requestId: string): string;
}

/** OpenAI-style usage (`prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`). */
export function openAiUsage(usage: UpstreamJson['usage'] | null | undefined): UsageCounts {
  if (!usage) return NO_USAGE;
  return {
    prompt: count(usage.prompt_tokens),
    completion: count(usage.completion_tokens),
    cached: cachedPromptTokens(usage),
  };
}

/** A non-negative safe integer, else 0. */
export function count(n: unknown): number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/** chat/completions, completions, embeddings on an OpenAI-compatible provider: bytes pass through. */
function openAi(endpoint: Endpoint, path: string): Exchange {
  return {
    name: `openai:${endpoint}`,
    path,
    payload: upstreamPayload,
    usage: (text) => openAiUsage(upstreamUsage(text)),
    answer: (text, alias) => (alias === null ? text : aliasJson(text, alias)),
    clientError: (status, text, apiKey) => upstreamClientError(status, parseUpstreamJson(text), apiKey),
    stream: (injectedUsage, alias) => new OpenAiStreamEvents(injectedUsage, alias),
  };
}

/**
 * Anthropic's messages on an OpenAI-compatible provider: the Messages request translated to a
 * chat/completions request, the answer and stream translated back (translate/, docs/translation.md).
 */
const openAiMessages: Exchange = {
  name: 'openai:messages',
  path: '/chat/completions',
  payload: (body, stream) => openAiMessagesPayload(body, stream),
  usage: chatCompletionUsage,
  answer: (text, alias) => chatCompletionToMessage(text, alias),
  clientError: (status, text, apiKey) => upstreamClientError(status, parseUpstreamJson(text), apiKey),
  stream: (_injectedUsage, alias) => new OpenAiMessagesStream(alias),
  interrupted: anthropicInterruptedEvent,
};

const OPENAI: Partial<Record<Endpoint, Exchange>> = {
  chat: openAi('chat', '/chat/completions'),
  completions: openAi('completions', '/completions'),
  embeddings: openAi('embeddings', '/embeddings'),
  responses: responsesExchange,
  messages: openAiMessages,
};

/**
 * chat/completions on an Anthropic provider: the request translated to a Messages request, the
 * answer and stream translated back (translate/, docs/translation.md).
 */
const anthropicChat: Exchange = {
  name: 'anthropic:chat',
  path: '/messages',
  payload: (body, stream) => anthropicChatPayload(body, stream),
  usage: messagesUsage,
  answer: (text, alias) => messageToChatCompletion(text, alias),
  clientError: messagesClientError,
  stream: (injectedUsage, alias) => new AnthropicChatStream(injectedUsage, alias),
};

const ANTHROPIC: Partial<Record<Endpoint, Exchange>> = {
  // The Messages API, passed through natively (anthropic-exchange.ts).
  messages: ANTHROPIC_MESSAGES,
  chat: anthropicChat,
};

/**
 * The exchange for a client endpoint on a provider kind; null when that kind of provider cannot
 * serve the endpoint (the relay answers 400 `endpoint_not_supported`, naming the provider's kind).
 */
export function exchangeFor(endpoint: Endpoint, kind: ProviderKind): Exchange | null {
  return (kind === 'anthropic' ? ANTHROPIC : OPENAI)[endpoint] ?? null;
}
