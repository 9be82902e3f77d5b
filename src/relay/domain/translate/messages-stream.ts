import { sseData } from '../sse-relay.js';
import type { StreamEvents, UsageCounts } from '../stream-events.js';
import { anthropicUsageOf, chatUsageCounts, stopReason } from './messages-answer.js';

type Json = Record<string, unknown>;

/**
 * An OpenAI chat.completion.chunk stream read as an Anthropic Messages stream (docs/translation.md,
 * "The other way"): the first chunk → message_start; text deltas → a text block
 * (content_block_start, text_delta…); a tool call → a tool_use block (content_block_start with id and
 * name, then its arguments as input_json_delta); `[DONE]` → the open block's content_block_stop,
 * message_delta (stop_reason from finish_reason, the usage Floodgate asked for) and message_stop.
 * An error event becomes an Anthropic `error` event.
 */
export class OpenAiMessagesStream implements StreamEvents {
  usage: UsageCounts | null = null;
  deliveredChars = 0;
  private started = false;
  private finished = false;
  private finish: unknown = null;
  /** The open content block: its index and what it is (text, or the tool call index it carries). */
  private open: { index: number; tool: number | null } | null = null;
  private blocks = 0;
  /** OpenAI tool call index → content block index. */
  private readonly tools = new Map<number, number>();

  constructor(private readonly alias: string | null) {}

  event(event: string, separator: string): string {
    const data = sseData(event);
    if (data === null) return event + separator; // comments: harmless as they are
    if (data === '[DONE]') return this.close();
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch {
      return '';
    }
    if (!parsed || typeof parsed !== 'object') return '';
    const chunk = parsed as Json;
    if (chunk.error && typeof chunk.error === 'object') return this.error(chunk.error as Json);
    let out = this.start(chunk);
    if (chunk.usage && typeof chunk.usage === 'object') this.usage = chatUsageCounts(chunk.usage);
    const choice = Array.isArray(chunk.choices) ? (chunk.choices[0] as Json | undefined) : undefined;
    if (!choice) return out;
    const delta = (choice.delta ?? {}) as Json;
    if (typeof delta.content === 'string' && delta.content !== '') out += this.text(delta.content);
    if (Array.isArray(delta.tool_calls))
      for (const call of delta.tool_calls as unknown[])
        if (call && typeof call === 'object') out += this.toolCall(call as Json);
    if (choice.finish_reason) this.finish = choice.finish_reason;
    return out;
  }

  /** A stream that ended after its finish_reason but without `[DONE]` is closed all the same. */
  end(): string {
    return this.finish !== null ? this.close() : '';
  }

  private start(chunk: Json): string {
    if (this.started) return '';
    this.started = true;
    return write('message_start', {
      message: {
        id: typeof chunk.id === 'string' ? chunk.id : 'msg_translated',
        type: 'message',
        role: 'assistant',
        model: this.alias ?? chunk.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 0, output_tokens: 0 },
      },
    });
  }

  private text(text: string): string {
    let out = '';
    if (this.open === null || this.open.tool !== null) {
      out += this.stopBlock();
      this.open = { index: this.blocks++, tool: null };
      out += write('content_block_start', {
        index: this.open.index,
        content_block: { type: 'text', text: '' },
      });
    }
    this.deliveredChars += text.length;
    return (
      out + write('content_block_delta', { index: this.open.index, delta: { type: 'text_delta', text } })
    );
  }

  private toolCall(call: Json): string {
    const toolIndex = typeof call.index === 'number' ? call.index : 0;
    const fn = (call.function ?? {}) as Json;
    let out = '';
    let block = this.tools.get(toolIndex);
    if (block === undefined) {
      out += this.stopBlock();
      block = this.blocks++;
      this.tools.set(toolIndex, block);
      this.open = { index: block, tool: toolIndex };
      const name = typeof fn.name === 'string' ? fn.name : '';
      this.deliveredChars += name.length;
      out += write('content_block_start', {
        index: block,
        content_block: { type: 'tool_use', id: call.id, name, input: {} },
      });
    }
    const args = fn.arguments;
    if (typeof args === 'string' && args !== '') {
      this.deliveredChars += args.length;
      out += write('content_block_delta', {
        index: block,
        delta: { type: 'input_json_delta', partial_json: args },
      });
    }
    return out;
  }

  private stopBlock(): string {
    if (this.open === null) return '';
    const out = write('content_block_stop', { index: this.open.index });
    this.open = null;
    return out;
  }

  private close(): string {
    if (this.finished) return '';
    this.finished = true;
    let out = this.started ? '' : this.start({});
    out += this.stopBlock();
    const counts = this.usage ?? { prompt: 0, completion: 0, cached: 0 };
    out += write('message_delta', {
      delta: { stop_reason: stopReason(this.finish), stop_sequence: null },
      usage: anthropicUsageOf(counts),
    });
    return out + write('message_stop', {});
  }

  private error(error: Json): string {
    const type = error.type === 'rate_limit_error' ? 'rate_limit_error' : 'api_error';
    const message = typeof error.message === 'string' ? error.message : 'The upstream stream failed';
    return write('error', { error: { type, message } });
  }
}

function write(type: string, data: Json): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}
