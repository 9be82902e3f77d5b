import type { Cancellation } from '../infrastructure/upstream-client.js';

/**
 * "The client went away" for one request: set when its connection closes before the answer is
 * written. Cheaper than an AbortController per request (an AbortSignal is an EventTarget, costly to
 * create and to add and remove listeners on): the upstream request listens through one callback slot,
 * and an AbortSignal (for the queue wait, which takes one) is made only when asked for.
 */
export class ClientGone implements Cancellation {
  aborted = false;
  private controller: AbortController | null = null;
  private listener: (() => void) | null = null;

  /** An AbortSignal that aborts when the client goes (made on first use; already aborted if it has gone). */
  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort();
    }
    return this.controller.signal;
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.controller?.abort();
    const listener = this.listener;
    this.listener = null;
    listener?.();
  }

  onAbort(listener: () => void): void {
    this.listener = listener;
  }

  offAbort(listener: () => void): void {
    if (this.listener === listener) this.listener = null;
  }
}
