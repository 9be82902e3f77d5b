import { sseData } from '../sse-relay.js';
import type { StreamEvents, UsageCounts } from '../stream-events.js';
import { anthropicUsageCounts, finishReason, openAiUsageOf, type AnthropicUsage } from './chat-answer.js';

type Json = Record<string, unknown>;

/**
 * An Anthropic Messages stream read as OpenAI chat.completion.chunk events (docs/translation.md):
 * message_start → the first chunk (role assistant), text deltas → `delta.content`, a tool_use
 * block → `delta.tool_calls[{index, id, type, function: {name, arguments: ''}}]` then its
 * input_json_delta pieces as `arguments`, message_delta's stop_reason → the finish_reason chunk,
 * message_stop → the usage chunk (only when the client asked for it: `stream_options.include_usage`)
 * and `data: [DONE]`; ping, thinking and block stops are dropped; an `error` event becomes an
 * OpenAI-style error event. The usage is kept for accounting whether the client sees it or not.
 */
export class AnthropicChatStream implements StreamEvents {
  usage: UsageCounts | null = null;
  deliveredChars = 0;
  private id = 'chatcmpl-translated';
  private model: unknown = null;
  private created: number;
  private raw: AnthropicUsage = {};
  /** Content block index → tool call index (OpenAI numbers tool calls from 0 among themselves). */
  private readonly tools = new Map<number, number>();
  private done = false;

  /**
   * `injectedUsage`: the client did not ask for usage (`stream_options.include_usage`), so no usage
   * chunk is written. `alias`: a routed request's model name (else the upstream's).
   */
  constructor(
    private readonly injectedUsage: boolean,
    private readonly alias: string | null,
    now = Date.now(),
  ) {
    this.created = Math.floor(now / 1000);
  }

  event(event: string, separator: string): string {
    const data = sseData(event);
    if (data === null) return event + separator; // comments and the like: harmless as they are
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch {
      return '';
    }
    if (!parsed || typeof parsed !== 'object') return '';
    const e = parsed as Json;
    switch (e.type) {
      case 'message_start':
        return this.start(e.message as Json | undefined);
      case 'content_block_start':
        return this.blockStart(e);
      case 'content_block_delta':
        return this.blockDelta(e);
      case 'message_delta': {
        this.addUsage(e.usage as AnthropicUsage | undefined);
        const delta = (e.delta ?? {}) as Json;
        return this.chunk({}, finishReason(delta.stop_reason));
      }
      case 'message_stop':
        return this.stop();
      case 'error':
        return this.error(e.error as Json | undefined);
      default: // ping, content_block_stop, anything newer
        return '';
    }
  }

  end(): string {
    return '';
  }

  private start(message: Json | undefined): string {
    if (message) {
      if (typeof message.id === 'string') this.id = message.id;
      this.model = message.model;
      this.addUsage(message.usage as AnthropicUsage | undefined);
    }
    return this.chunk({ role: 'assistant', content: '' }, null);
  }

  private blockStart(e: Json): string {
    const block = (e.content_block ?? {}) as Json;
    if (block.type === 'text') {
      const text = typeof block.text === 'string' ? block.text : '';
      if (text === '') return '';
      this.deliveredChars += text.length;
      return this.chunk({ content: text }, null);
    }
    if (block.type === 'tool_use' && typeof e.index === 'number') {
      const index = this.tools.size;
      this.tools.set(e.index, index);
      const name = typeof block.name === 'string' ? block.name : '';
      this.deliveredChars += name.length;
      return this.chunk(
        { tool_calls: [{ index, id: block.id, type: 'function', function: { name, arguments: '' } }] },
        null,
      );
    }
    return ''; // thinking and server-tool blocks: no chat.completion form
  }

  private blockDelta(e: Json): string {
    const delta = (e.delta ?? {}) as Json;
    if (delta.type === 'text_delta' && typeof delta.text === 'string') {
      if (delta.text === '') return '';
      this.deliveredChars += delta.text.length;
      return this.chunk({ content: delta.text }, null);
    }
    if (delta.type === 'input_json_delta' && typeof delta.partial_json === 'string') {
      const index = typeof e.index === 'number' ? this.tools.get(e.index) : undefined;
      if (index === undefined || delta.partial_json === '') return '';
      this.deliveredChars += delta.partial_json.length;
      return this.chunk({ tool_calls: [{ index, function: { arguments: delta.partial_json } }] }, null);
    }
    return ''; // thinking_delta, signature_delta, citations
  }

  private stop(): string {
    if (this.done) return '';
    this.done = true;
    let out = '';
    if (!this.injectedUsage)
      out += this.write({
        ...this.envelope(),
        choices: [],
        usage: openAiUsageOf(this.usage ?? anthropicUsageCounts(null)),
      });
    return out + 'data: [DONE]\n\n';
  }

  private error(error: Json | undefined): string {
    const anthropicType = error && typeof error.type === 'string' ? error.type : 'api_error';
    const type =
      anthropicType === 'overloaded_error'
        ? 'service_unavailable_error'
        : anthropicType === 'rate_limit_error'
          ? 'rate_limit_error'
          : 'upstream_error';
    return this.write({
      error: {
        type,
        code: anthropicType,
        message: error && typeof error.message === 'string' ? error.message : 'The upstream stream failed',
        param: null,
      },
    });
  }

  /** Anthropic reports usage in message_start and (cumulative) in message_delta: the later figure wins. */
  private addUsage(usage: AnthropicUsage | undefined): void {
    if (!usage || typeof usage !== 'object') return;
    for (const key of [
      'input_tokens',
      'output_tokens',
      'cache_creation_input_tokens',
      'cache_read_input_tokens',
    ] as const) {
      const v = usage[key];
      if (typeof v === 'number') this.raw[key] = v;
    }
    this.usage = anthropicUsageCounts(this.raw);
  }

  private envelope(): Json {
    return {
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.alias ?? this.model,
    };
  }

  private chunk(delta: Json, finish: string | null): string {
    return this.write({
      ...this.envelope(),
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });
  }

  private write(value: Json): string {
    return `data: ${JSON.stringify(value)}\n\n`;
  }
}
