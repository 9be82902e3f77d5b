import { StringDecoder } from 'node:string_decoder';
import { aliasSseEvent } from './route-model.js';

export interface StreamUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number } | null;
}

/**
 * Passes an upstream SSE stream through event by event (never holding more than one incomplete
 * event), while reading the usage the upstream reports and, when Floodgate asked for usage on the
 * client's behalf (`stream_options.include_usage`), dropping the extra usage-only event the client
 * did not ask for. Counts delivered content so a stream cut short is still charged for what the
 * client received. For a routed request (`alias`), every event's `model` is the alias the client sent.
 */
export class SseRelay {
  private readonly decoder = new StringDecoder('utf8');
  private buffer = '';
  usage: StreamUsage | null = null;
  deliveredChars = 0;
  sawDone = false;
  events = 0;

  constructor(
    private readonly stripUsageEvent: boolean,
    private readonly alias: string | null = null,
  ) {}

  /** Feed upstream bytes; returns the text to write to the client now ('' when nothing is complete). */
  push(chunk: Buffer): string {
    this.buffer += this.decoder.write(chunk);
    return this.drain(false);
  }

  /** Upstream ended: flush whatever is left (an unterminated last event is passed through as is). */
  end(): string {
    this.buffer += this.decoder.end();
    return this.drain(true);
  }

  private drain(final: boolean): string {
    let out = '';
    for (;;) {
      const match = /\r?\n\r?\n/.exec(this.buffer);
      if (!match) break;
      const event = this.buffer.slice(0, match.index);
      const separator = match[0];
      this.buffer = this.buffer.slice(match.index + separator.length);
      if (this.keep(event))
        out += (this.alias === null ? event : aliasSseEvent(event, this.alias)) + separator;
    }
    if (final && this.buffer.length > 0) {
      if (this.keep(this.buffer))
        out += this.alias === null ? this.buffer : aliasSseEvent(this.buffer, this.alias);
      this.buffer = '';
    }
    return out;
  }

  private keep(event: string): boolean {
    this.events++;
    const data = dataOf(event);
    if (data === null) return true; // comments, retry:, id: lines
    if (data === '[DONE]') {
      this.sawDone = true;
      return true;
    }
    if (!data.includes('"usage"') && !data.includes('"content"') && !data.includes('"text"')) return true;
    let parsed: { usage?: StreamUsage | null; choices?: { delta?: { content?: unknown }; text?: unknown }[] };
    try {
      parsed = JSON.parse(data) as typeof parsed;
    } catch {
      return true;
    }
    for (const choice of parsed.choices ?? []) {
      const content = choice.delta?.content ?? choice.text;
      if (typeof content === 'string') this.deliveredChars += content.length;
    }
    if (parsed.usage && typeof parsed.usage === 'object') {
      this.usage = parsed.usage;
      if (this.stripUsageEvent && Array.isArray(parsed.choices) && parsed.choices.length === 0) return false;
    }
    return true;
  }

  /** Completion tokens: the upstream's figure when it sent one, else an estimate of what was delivered. */
  completionTokens(): number {
    return this.usage?.completion_tokens ?? Math.ceil(this.deliveredChars / 4);
  }
}

function dataOf(event: string): string | null {
  let data: string | null = null;
  for (const line of event.split(/\r?\n/)) {
    if (line.startsWith('data:')) {
      const value = line.slice(line.charAt(5) === ' ' ? 6 : 5);
      data = data === null ? value : `${data}\n${value}`;
    }
  }
  return data;
}
