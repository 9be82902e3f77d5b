import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { UpstreamGuardService } from '../../key-pool/services/upstream-guard.service.js';
import type { UpstreamFailure } from '../domain/retry-table.js';

export interface UpstreamRequest {
  baseUrl: string;
  /** Path below the provider's base URL, e.g. `/chat/completions`. */
  path: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  /** The client going away aborts the request (before it is sent, or while its body is read). */
  signal: Cancellation;
  /** Time to the response headers and between body chunks. */
  timeoutMs: number;
  /**
   * Per-target overrides (a route target's `timeouts`), each optional: connect, first byte (response
   * headers) and the whole exchange (`totalMs`: the caller passes the streaming total for a stream).
   */
  timeouts?: { connectMs?: number | null; firstByteMs?: number | null; totalMs?: number | null };
}

export type { UpstreamFailure };

/** Abort without an AbortSignal: one listener at a time (see relay/stages/client-gone.ts). */
export interface Cancellation {
  readonly aborted: boolean;
  onAbort(listener: () => void): void;
  offAbort(listener: () => void): void;
}

/** An upstream answer with its headers in and its body read on demand (`text()` or chunk by chunk). */
export interface UpstreamResponse {
  statusCode: number;
  headers: Record<string, string | string[]>;
  body: UpstreamBody;
}

export interface UpstreamBody extends AsyncIterable<Buffer> {
  /** The whole body as UTF-8 text. */
  text(): Promise<string>;
}

/** Body bytes buffered before the upstream socket is paused until the reader catches up (undici's default). */
const HIGH_WATER_MARK = 64 * 1024;

/**
 * One upstream request on undici's dispatcher API: what `Pool.request` does for the relay, without
 * its per-request async resource, Node stream and body mixin — the response body is a queue of
 * chunks read by `text()` or `for await`, the socket paused past 64 KiB unread, the request aborted
 * when the client goes (or by a reader that stops early), as `request` does with a signal.
 */
class UpstreamExchange implements Dispatcher.DispatchHandler, UpstreamBody {
  private abortRequest: ((err?: Error) => void) | null = null;
  private resumeSocket: (() => void) | null = null;
  private headersIn = false;
  /** The socket is paused: more than HIGH_WATER_MARK unread. */
  private paused = false;
  /** `text()` is collecting the whole body: never pause. */
  private collecting = false;
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private failure: Error | null = null;
  /** A reader waiting for the next chunk, the end or the failure. */
  private wake: (() => void) | null = null;
  private readonly onAbort = () => this.abort(new undiciErrors.RequestAbortedError());

  constructor(
    private readonly signal: Cancellation,
    private readonly resolve: (response: UpstreamResponse) => void,
    private readonly reject: (err: Error) => void,
  ) {
    signal.onAbort(this.onAbort);
  }

  private abort(err: Error): void {
    if (this.abortRequest) this.abortRequest(err);
    else this.onError(err);
  }

  private settle(): void {
    this.signal.offAbort(this.onAbort);
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortRequest = abort;
    // Aborted while queued in the pool: ends here, never sent.
    if (this.failure) abort(this.failure);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx: informational, the answer follows
    this.headersIn = true;
    this.resumeSocket = resume;
    this.resolve({ statusCode, headers: parseHeaders(rawHeaders), body: this });
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const wake = this.wake;
    this.wake = null;
    wake?.();
    if (this.collecting || this.buffered < HIGH_WATER_MARK) return true;
    this.paused = true;
    return false;
  }

  private resume(): void {
    if (this.paused && !this.ended && !this.failure) {
      this.paused = false;
      this.resumeSocket?.();
    }
  }

  onComplete(): void {
    this.ended = true;
    this.settle();
  }

  onError(err: Error): void {
    if (this.ended || this.failure) return;
    this.failure = err;
    this.settle();
    if (!this.headersIn) this.reject(err);
  }

  /** The next chunk; null at the end; throws the failure. */
  private async next(): Promise<Buffer | null> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk !== undefined) {
        this.buffered -= chunk.length;
        if (this.buffered < HIGH_WATER_MARK) this.resume();
        return chunk;
      }
      if (this.failure) throw this.failure;
      if (this.ended) return null;
      await new Promise<void>((wake) => (this.wake = wake));
    }
  }

  async text(): Promise<string> {
    // Whole answers usually arrive before anyone asks: no wait then.
    this.collecting = true;
    this.resume();
    while (!this.ended && !this.failure) await new Promise<void>((wake) => (this.wake = wake));
    if (this.failure) throw this.failure;
    const chunks = this.chunks.splice(0);
    this.buffered = 0;
    return chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: async () => {
        const chunk = await this.next();
        return chunk === null ? { done: true, value: undefined } : { done: false, value: chunk };
      },
      // A reader that stops early (break, throw) ends the request: nobody will read the rest.
      return: () => {
        if (!this.ended && !this.failure) this.abort(new undiciErrors.RequestAbortedError());
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }
}

/** undici's header parsing for a response: lower-case names, repeated headers as arrays. */
function parseHeaders(raw: Buffer[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    const value = raw[i + 1]!.toString('latin1');
    const seen = Object.hasOwn(out, name) ? out[name] : undefined;
    if (seen === undefined) {
      if (name === '__proto__')
        Object.defineProperty(out, name, { value, enumerable: true, configurable: true, writable: true });
      else out[name] = value;
    } else if (typeof seen === 'string') out[name] = [seen, value];
    else seen.push(value);
  }
  return out;
}

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamFailure,
    message: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/**
 * undici connection pools, one per upstream origin, keep-alive, every connection dialled through
 * KeyPool's SSRF guard (the address actually connected to is checked, so DNS rebinding can't reach
 * a forbidden address).
 */
@Injectable()
export class UpstreamClient implements OnApplicationShutdown {
  private readonly pools = new Map<string, Pool>();
  private readonly targets = new Map<string, { pool: Pool; basePath: string }>();

  constructor(private readonly guard: UpstreamGuardService) {}

  private pool(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, {
        // No cap per origin: a cap would make long streams beyond it wait for whole streams to end
        // (the bench saw stalls at exactly 256). Concurrency is bounded by the key pool instead.
        connections: null,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 120_000,
        connect: this.guard.connector({ timeout: 10_000 }),
      });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  /** A base URL's pool and path prefix, parsed once (base URLs are few; parsing a URL is not free). */
  private target(baseUrl: string): { pool: Pool; basePath: string } {
    let target = this.targets.get(baseUrl);
    if (target === undefined) {
      const url = new URL(baseUrl);
      target = { pool: this.pool(url.origin), basePath: url.pathname.replace(/\/+$/, '') };
      if (this.targets.size >= 1000) this.targets.clear();
      this.targets.set(baseUrl, target);
    }
    return target;
  }

  /**
   * Resolves with the response once its headers are in (the body still to read), or rejects with
   * what undici or the signal threw (the caller classifies it: `classify`).
   */
  send(req: UpstreamRequest): Promise<UpstreamResponse> {
    let target: { pool: Pool; basePath: string };
    try {
      target = this.target(req.baseUrl);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const { pool, basePath } = target;
    return new Promise((resolve, reject) => {
      const exchange = new UpstreamExchange(req.signal, resolve, reject);
      if (req.signal.aborted) return exchange.onError(new undiciErrors.RequestAbortedError());
      pool.dispatch(
        {
          path: basePath + req.path,
          method: req.method,
          headers: req.headers,
          body: req.body,
          headersTimeout: req.timeoutMs,
          bodyTimeout: req.timeoutMs,
        },
        exchange,
      );
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close().catch(() => undefined)));
    this.pools.clear();
    this.targets.clear();
  }
}

export function classify(err: unknown): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const e = err as {
    name?: string;
    code?: string;
    message?: string;
    cause?: { code?: string; name?: string };
  };
  const code = e.code ?? e.cause?.code;
  if (code === 'UPSTREAM_ADDRESS_REFUSED')
    return new UpstreamError('refused_address', e.message ?? 'upstream address refused');
  if (
    e.name === 'AbortError' ||
    code === 'UND_ERR_ABORTED' ||
    err instanceof undiciErrors.RequestAbortedError
  ) {
    return new UpstreamError('aborted', 'request aborted');
  }
  if (
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT'
  ) {
    return new UpstreamError('timeout', 'upstream did not answer in time');
  }
  if (
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'ENOTFOUND' ||
    code === 'EAI_AGAIN' ||
    code === 'UND_ERR_SOCKET' ||
    code === 'EHOSTUNREACH' ||
    code === 'EPIPE'
  ) {
    return new UpstreamError('connect', 'could not reach the upstream');
  }
  return new UpstreamError('protocol', 'upstream connection failed');
}
