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
  signal: AbortSignal;
  /** Time to the response headers and between body chunks. */
  timeoutMs: number;
}

export type { UpstreamFailure };

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

  /** Rejects with what undici threw (the caller classifies it: `classify`). */
  send(req: UpstreamRequest): Promise<Dispatcher.ResponseData> {
    let target: { pool: Pool; basePath: string };
    try {
      target = this.target(req.baseUrl);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const { pool, basePath } = target;
    return pool.request({
      path: basePath + req.path,
      method: req.method,
      headers: req.headers,
      body: req.body,
      signal: req.signal,
      headersTimeout: req.timeoutMs,
      bodyTimeout: req.timeoutMs,
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
