import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { UpstreamGuardService } from '../../key-pool/services/upstream-guard.service.js';
import type { UpstreamFailure } from '../domain/retry-table.js';

export interface UpstreamRequest {
  baseUrl: string;
  /** Path below the provider's base URL, e.g. `/chat/completions`. */
  path: string;
  method: 'GET' | 'POST' | 'DELETE';
  headers: Record<string, string>;
  body?: string;
  /** The client going away aborts the request (before it is sent, or while its body is read). */
  signal: Cancellation;
  /** Time to the response headers and between body chunks. */
  timeoutMs: number;
  /**
   * Per-target overrides (a route target's `timeouts`), each optional: connect, first byte (response
   * headers) and the whole exchange (`totalMs`: the caller passes the streaming total for a stream).
   * `connectMs`: TCP (+TLS) connect, default 10 s. `firstByteMs`: to the response headers, default
   * `timeoutMs`. `totalMs`: from send to the end of the body, none by default; before the headers
   * the send rejects with a timeout, after them the body read throws one (`classify` → 'timeout').
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
  /**
   * The whole body as UTF-8 text when it has already arrived in full (the usual case for a whole
   * answer: it comes with the headers), without a promise; null while more is to come or on a
   * failure (then `text()` waits for it or throws). Absent: unknown, use `text()`.
   */
  textNow?(): string | null;
  /** True when a chunk is already here, unread (the next read needs no wait). Absent: unknown. */
  readonly hasChunk?: boolean;
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
  /** The whole-exchange timer (`timeouts.totalMs`); none without one. */
  private totalTimer: NodeJS.Timeout | null = null;
  private readonly onAbort = () => this.abort(new undiciErrors.RequestAbortedError());

  constructor(
    private readonly signal: Cancellation,
    private readonly resolve: (response: UpstreamResponse) => void,
    private readonly reject: (err: Error) => void,
  ) {
    signal.onAbort(this.onAbort);
  }

  /** Fails the exchange (headers or body, whichever is pending) `ms` from now unless it ends first. */
  startTotalTimer(ms: number): void {
    this.totalTimer = setTimeout(() => {
      this.totalTimer = null;
      this.abort(new TotalTimeoutError(ms));
    }, ms);
  }

  private abort(err: Error): void {
    if (this.abortRequest) this.abortRequest(err);
    else this.onError(err);
  }

  private settle(): void {
    if (this.totalTimer !== null) {
      clearTimeout(this.totalTimer);
      this.totalTimer = null;
    }
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

  get hasChunk(): boolean {
    return this.chunks.length > 0;
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
    return this.drain();
  }

  textNow(): string | null {
    return this.ended && !this.failure ? this.drain() : null;
  }

  private drain(): string {
    const chunks = this.chunks;
    const n = chunks.length;
    const text =
      n === 1 ? chunks[0]!.toString('utf8') : n === 0 ? '' : Buffer.concat(chunks).toString('utf8');
    chunks.length = 0;
    this.buffered = 0;
    return text;
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

/** `timeouts.totalMs` elapsed before the exchange ended (classified 'timeout'). */
export class TotalTimeoutError extends Error {
  readonly code = 'UPSTREAM_TOTAL_TIMEOUT';
  constructor(ms: number) {
    super(`upstream exchange exceeded its total timeout (${ms} ms)`);
    this.name = 'TotalTimeoutError';
  }
}

/** Connect timeout when a request names none (undici's default too). */
export const DEFAULT_CONNECT_MS = 10_000;
/**
 * Pools kept at most. A pool is per (origin, connect timeout): origins × the distinct `connectMs` of
 * route targets, a handful in practice; past this the oldest pool is closed (gracefully: its requests
 * in flight finish) so values an admin cycles through cannot pile up pools.
 */
export const MAX_POOLS = 256;

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamFailure,
    message: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** The pool key: the origin alone with the default connect timeout, `origin connectMs` otherwise. */
export function poolKey(origin: string, connectMs: number): string {
  return connectMs === DEFAULT_CONNECT_MS ? origin : `${origin} ${connectMs}`;
}

/** A usable positive whole number of ms, or the fallback (null, undefined, 0, NaN: none given). */
function ms(value: number | null | undefined, fallback: number): number {
  return value !== null && value !== undefined && value > 0 && Number.isFinite(value)
    ? Math.ceil(value)
    : fallback;
}

/**
 * undici connection pools, one per upstream origin and connect timeout (undici sets the connect
 * timeout per pool, in its connector), keep-alive, every connection dialled through KeyPool's SSRF
 * guard (the address actually connected to is checked, so DNS rebinding can't reach a forbidden
 * address).
 */
@Injectable()
export class UpstreamClient implements OnApplicationShutdown {
  private readonly pools = new Map<string, Pool>();
  private readonly targets = new Map<string, { pool: Pool; basePath: string }>();

  constructor(private readonly guard: UpstreamGuardService) {}

  /** Pools open now (per origin and connect timeout). */
  get poolCount(): number {
    return this.pools.size;
  }

  private pool(origin: string, connectMs: number): Pool {
    const key = poolKey(origin, connectMs);
    let pool = this.pools.get(key);
    if (!pool) {
      if (this.pools.size >= MAX_POOLS) {
        const [oldestKey, oldest] = this.pools.entries().next().value as [string, Pool];
        this.pools.delete(oldestKey);
        // Requests in flight on it finish; the cached targets may point at it: rebuilt on demand.
        oldest.close().catch(() => undefined);
        this.targets.clear();
      }
      pool = new Pool(origin, {
        // No cap per origin: a cap would make long streams beyond it wait for whole streams to end
        // (the bench saw stalls at exactly 256). Concurrency is bounded by the key pool instead.
        connections: null,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 120_000,
        connect: this.guard.connector({ timeout: connectMs }),
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /**
   * A base URL's pool (for a connect timeout) and path prefix, parsed once (base URLs are few;
   * parsing a URL is not free).
   */
  private target(baseUrl: string, connectMs: number): { pool: Pool; basePath: string } {
    const cacheKey = connectMs === DEFAULT_CONNECT_MS ? baseUrl : `${baseUrl} ${connectMs}`;
    let target = this.targets.get(cacheKey);
    if (target === undefined) {
      const url = new URL(baseUrl);
      target = { pool: this.pool(url.origin, connectMs), basePath: url.pathname.replace(/\/+$/, '') };
      if (this.targets.size >= 1000) this.targets.clear();
      this.targets.set(cacheKey, target);
    }
    return target;
  }

  /**
   * Resolves with the response once its headers are in (the body still to read), or rejects with
   * what undici or the signal threw (the caller classifies it: `classify`).
   */
  send(req: UpstreamRequest): Promise<UpstreamResponse> {
    const t = req.timeouts;
    let target: { pool: Pool; basePath: string };
    try {
      target = this.target(req.baseUrl, t ? ms(t.connectMs, DEFAULT_CONNECT_MS) : DEFAULT_CONNECT_MS);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const { pool, basePath } = target;
    return new Promise((resolve, reject) => {
      const exchange = new UpstreamExchange(req.signal, resolve, reject);
      if (req.signal.aborted) return exchange.onError(new undiciErrors.RequestAbortedError());
      const totalMs = t ? ms(t.totalMs, 0) : 0;
      if (totalMs > 0) exchange.startTotalTimer(totalMs);
      pool.dispatch(
        {
          path: basePath + req.path,
          method: req.method,
          headers: req.headers,
          body: req.body,
          headersTimeout: t ? ms(t.firstByteMs, req.timeoutMs) : req.timeoutMs,
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
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'UPSTREAM_TOTAL_TIMEOUT'
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
