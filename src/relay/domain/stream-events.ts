/** The dialect-neutral shapes an exchange (exchange.ts) reads answers into. */

/** An answer's token counts, the same for every dialect (what is charged, priced and logged). */
export interface UsageCounts {
  /** All input tokens (cached ones included). */
  prompt: number;
  completion: number;
  /** Of `prompt`, how many the upstream served from its prompt cache. */
  cached: number;
}

export const NO_USAGE: UsageCounts = { prompt: 0, completion: 0, cached: 0 };

/**
 * Reads (and may rewrite) a 200 stream, one complete SSE event at a time (the SseRelay splits the
 * bytes into events). Returns the text to write to the client for the event (with its separator;
 * '' drops it; a translation may return several events), and keeps the usage seen so far.
 */
export interface StreamEvents {
  /** One upstream event without its separator; `separator` is the blank line that ended it ('' for an unterminated last event). */
  event(event: string, separator: string): string;
  /** The upstream ended (after the last event): anything still to write. */
  end(): string;
  /** The usage the upstream reported (null: none seen yet). */
  readonly usage: UsageCounts | null;
  /** Output characters delivered: an estimate of completion tokens when no usage came. */
  readonly deliveredChars: number;
  /** A stream that creates a stored answer (the Responses API): its id once an event has carried it. */
  readonly createdId?: string | null;
}
