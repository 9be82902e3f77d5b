import type { Verdict } from '../rejection.js';
import type { UpstreamPayload } from '../validation.js';
import { chatToMessages } from './chat-request.js';
import { messagesToChat } from './messages-request.js';

export { DEFAULT_MAX_TOKENS, IGNORED, chatToMessages } from './chat-request.js';
export { messageToChatCompletion, messagesClientError, messagesUsage } from './chat-answer.js';
export { AnthropicChatStream } from './chat-stream.js';
export { MESSAGES_IGNORED, messagesToChat } from './messages-request.js';
export { chatCompletionToMessage, chatCompletionUsage } from './messages-answer.js';
export { OpenAiMessagesStream } from './messages-stream.js';

/**
 * The upstream body of a chat/completions request to an Anthropic provider. `injectedUsage` is true
 * when the client did not ask for stream usage (`stream_options.include_usage`): Anthropic always
 * reports it, and the translated stream leaves the usage chunk out.
 */
export function anthropicChatPayload(
  body: Record<string, unknown>,
  stream: boolean,
): Verdict<UpstreamPayload> {
  const translated = chatToMessages(body, stream);
  if (!translated.ok) return translated;
  const options = body.stream_options as { include_usage?: unknown } | null | undefined;
  return {
    ok: true,
    value: {
      payload: JSON.stringify(translated.value),
      injectedUsage: stream && options?.include_usage !== true,
    },
  };
}

/**
 * The upstream body of a Messages request to an OpenAI-compatible provider. Streams always ask for
 * usage (`stream_options.include_usage`): the translated stream reports it in message_delta.
 */
export function openAiMessagesPayload(
  body: Record<string, unknown>,
  stream: boolean,
): Verdict<UpstreamPayload> {
  const translated = messagesToChat(body, stream);
  if (!translated.ok) return translated;
  return { ok: true, value: { payload: JSON.stringify(translated.value), injectedUsage: stream } };
}
