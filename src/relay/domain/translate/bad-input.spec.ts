import { describe, expect, it } from 'vitest';
import { chatToMessages, messagesToChat } from './index.js';

/** Any JSON value in any field: a Verdict (accepted or a 400), never a throw (which would be a 500). */
const JUNK: unknown[] = [
  null,
  0,
  -1,
  1.5,
  '',
  'x',
  true,
  [],
  [null],
  [1],
  ['x'],
  {},
  { type: 1 },
  { type: 'function' },
];

const CHAT_FIELDS = [
  'messages',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'top_k',
  'stop',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'user',
  'safety_identifier',
  'n',
  'logprobs',
  'top_logprobs',
  'response_format',
  'modalities',
  'logit_bias',
  'stream_options',
  'seed',
];
const CHAT_MESSAGE_FIELDS = ['role', 'content', 'tool_calls', 'tool_call_id', 'audio', 'function_call'];
const MESSAGES_FIELDS = [
  'messages',
  'system',
  'max_tokens',
  'temperature',
  'top_p',
  'top_k',
  'stop_sequences',
  'tools',
  'tool_choice',
  'metadata',
  'thinking',
];
const MESSAGES_MESSAGE_FIELDS = ['role', 'content'];

function sweep(
  translate: (body: Record<string, unknown>) => unknown,
  base: () => Record<string, any>,
  fields: string[],
  messageFields: string[],
) {
  for (const junk of JUNK) {
    for (const field of fields)
      expect(() => translate({ ...base(), [field]: junk }), `${field}=${JSON.stringify(junk)}`).not.toThrow();
    for (const field of messageFields) {
      for (const role of ['user', 'assistant', 'tool', 'system']) {
        const body = base();
        body.messages = [{ role, content: 'x', tool_call_id: 'c', [field]: junk }];
        expect(() => translate(body), `message ${role}.${field}=${JSON.stringify(junk)}`).not.toThrow();
        body.messages = [{ role, content: [junk], tool_calls: [junk], [field]: junk }];
        expect(() => translate(body), `message ${role} parts ${JSON.stringify(junk)}`).not.toThrow();
        body.messages = [
          {
            role,
            content: [
              { type: 'tool_result', tool_use_id: 'x', content: junk },
              { type: 'image', source: junk },
              { type: 'image_url', image_url: junk },
              { type: 'tool_use', id: 'i', name: 'n', input: junk },
            ],
          },
        ];
        expect(() => translate(body), `message ${role} blocks ${JSON.stringify(junk)}`).not.toThrow();
      }
    }
  }
}

describe('translations never throw on bad input', () => {
  it('chat/completions → Messages', () => {
    sweep(
      (b) => chatToMessages(b, true),
      () => ({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
      CHAT_FIELDS,
      CHAT_MESSAGE_FIELDS,
    );
  });
  it('Messages → chat/completions', () => {
    sweep(
      (b) => messagesToChat(b, true),
      () => ({ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
      MESSAGES_FIELDS,
      MESSAGES_MESSAGE_FIELDS,
    );
  });
});

describe('answer and stream translations never throw on odd upstream JSON', () => {
  const values: unknown[] = [null, 0, 'x', [], [null], {}, { type: 1 }];
  it('whatever each field holds', async () => {
    const { messageToChatCompletion, chatCompletionToMessage, AnthropicChatStream, OpenAiMessagesStream } =
      await import('./index.js');
    for (const v of values) {
      const anthropic = [
        { type: 'message', content: v },
        { type: 'message', content: [v, { type: 'tool_use', input: v }], usage: v, stop_reason: v },
      ];
      for (const a of anthropic) expect(() => messageToChatCompletion(JSON.stringify(a), null)).not.toThrow();
      const openai: unknown[] = [
        { choices: v },
        { choices: [v] },
        { choices: [{ message: v }] },
        { choices: [{ message: { content: v, tool_calls: [v], refusal: v } }], usage: v },
        { choices: [{ message: { tool_calls: [{ function: v }] } }] },
      ];
      for (const o of openai) expect(() => chatCompletionToMessage(JSON.stringify(o), null)).not.toThrow();
      const anthropicEvents = [
        'message_start',
        'content_block_start',
        'content_block_delta',
        'message_delta',
        'error',
      ];
      const chat = new AnthropicChatStream(false, null);
      for (const type of anthropicEvents)
        for (const field of ['message', 'content_block', 'delta', 'usage', 'error', 'index'])
          expect(() => chat.event(`data: ${JSON.stringify({ type, [field]: v })}`, '\n\n')).not.toThrow();
      expect(() => chat.event(`data: ${JSON.stringify({ type: 'message_stop' })}`, '\n\n')).not.toThrow();
      const messages = new OpenAiMessagesStream(null);
      for (const chunk of openai.concat([
        { choices: [{ delta: v }] },
        { choices: [{ delta: { tool_calls: [v] } }] },
        { error: v },
      ]))
        expect(() => messages.event(`data: ${JSON.stringify(chunk)}`, '\n\n')).not.toThrow();
      expect(() => messages.event('data: [DONE]', '\n\n') + messages.end()).not.toThrow();
    }
  });
});
