import { StringDecoder } from 'node:string_decoder';
import type { StreamEvents, UsageCounts } from './stream-events.js';
import { aliasSseEvent } from './route-model.js';

/** OpenAI-style stream usage (the last chunk's `usage`). */
export interface StreamUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number } | null;
}

/**
 * Passes an upstream SSE stream through event by event (never holding more than one incomplete
 * event): splits the bytes into events and hands each to the exchange's reader (`StreamEvents`),
 * which says what the client gets for it and keeps the usage.
 */
export class SseRelay {
  private readonly decoder = new StringDecoder('utf8');
  private buffer = '';
  events = 0;

  constructor(readonly reader: StreamEvents) {}

  get usage(): UsageCounts | null {
    return this.reader.usage;
  }

  /** Feed upstream bytes; returns the text to write to the client now ('' when nothing is complete). */
  push(chunk: Buffer): string {
    this.buffer += this.decoder.write(chunk);
    return this.drain(false);
  }

  /** Upstream ended: flush whatever is left (an unterminated last event is passed through as is). */
  end(): string {
    this.buffer += this.decoder.end();
    return this.drain(true) + this.reader.end();
  }

  private drain(final: boolean): string {
    let out = '';
    for (;;) {
      const match = /\r?\n\r?\n/.exec(this.buffer);
      if (!match) break;
      const event = this.buffer.slice(0, match.index);
      const separator = match[0];
      this.buffer = this.buffer.slice(match.index + separator.length);
      this.events++;
      out += this.reader.event(event, separator);
    }
    if (final && this.buffer.length > 0) {
      this.events++;
      out += this.reader.event(this.buffer, '');
      this.buffer = '';
    }
    return out;
  }

  /** Completion tokens: the upstream's figure when it sent one, else an estimate of what was delivered. */
  completionTokens(): number {
    return this.reader.usage?.completion ?? Math.ceil(this.reader.deliveredChars / 4);
  }
}

/**
 * An OpenAI-compatible stream (chat/completions, completions): events pass through unchanged (a
 * routed request's with the alias as `model`) while the usage is read; when Floodgate asked for
 * usage on the client's behalf (`stream_options.include_usage`), the extra usage-only event the
 * client did not ask for is dropped. Counts delivered content so a stream cut short is still charged
 * for what the client received.
 */
export class OpenAiStreamEvents implements StreamEvents {
  usage: UsageCounts | null = null;
  deliveredChars = 0;
  sawDone = false;

  constructor(
    private readonly stripUsageEvent: boolean,
    private readonly alias: string | null = null,
  ) {}

  event(event: string, separator: string): string {
    if (!this.keep(event)) return '';
    return (this.alias === null ? event : aliasSseEvent(event, this.alias)) + separator;
  }

  end(): string {
    return '';
  }

  private keep(event: string): boolean {
    const data = sseData(event);
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
      const u = parsed.usage;
      const cached: unknown = u.prompt_tokens_details?.cached_tokens;
      this.usage = {
        prompt: nonNegative(u.prompt_tokens),
        completion: nonNegative(u.completion_tokens),
        cached: nonNegative(cached),
      };
      if (this.stripUsageEvent && Array.isArray(parsed.choices) && parsed.choices.length === 0) return false;
    }
    return true;
  }
}

function nonNegative(n: unknown): number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/** The data of one SSE event (its `data:` lines joined by newlines); null when it has none. */
export function sseData(event: string): string | null {
  // One line (the usual `data: {…}` event): no split.
  if (event.indexOf('\n') === -1)
    return event.startsWith('data:') ? event.slice(event.charAt(5) === ' ' ? 6 : 5) : null;
  let data: string | null = null;
  for (const line of event.split(/\r?\n/)) {
    if (line.startsWith('data:')) {
      const value = line.slice(line.charAt(5) === ' ' ? 6 : 5);
      data = data === null ? value : `${data}\n${value}`;
    }
  }
  return data;
}
