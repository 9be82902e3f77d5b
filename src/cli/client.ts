import { randomUUID } from 'node:crypto';
import { ConnectionError, GatewayError, UsageError } from './errors.js';

export const DEFAULT_URL = 'http://localhost:3000';
const DEFAULT_TIMEOUT_MS = 30_000;

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  body?: unknown;
  query?: Query;
  timeoutMs?: number;
}

/** Validates --url / FLOODGATE_URL: an http(s) URL, returned without a trailing slash. */
export function normalizeBaseUrl(raw: string, source: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`${source} must be an http(s) URL such as ${DEFAULT_URL}, got "${raw}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${source} must be an http(s) URL such as ${DEFAULT_URL}, got "${raw}"`);
  }
  return url.toString().replace(/\/+$/, '');
}

/**
 * A small client for the gateway's admin API: the admin key as a Bearer token, JSON in and out, a
 * request id of its own on every call (so an error can always be traced in the gateway's logs), and
 * every failure turned into a GatewayError (the API's message, code and request id) or a
 * ConnectionError (nothing, or not Floodgate, answered).
 */
export class AdminClient {
  constructor(
    readonly baseUrl: string,
    private readonly apiKey: string,
  ) {}

  get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, { query });
  }

  post<T>(path: string, body?: unknown, options: Omit<RequestOptions, 'body'> = {}): Promise<T> {
    return this.request<T>('POST', path, { ...options, body });
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, { body });
  }

  delete(path: string): Promise<void> {
    return this.request<void>('DELETE', path);
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const requestId = `cli-${randomUUID()}`;
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.apiKey}`,
      accept: 'application/json',
      'x-request-id': requestId,
    };
    // Fastify refuses a JSON content type on an empty body: only send it with one.
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await response.text();
    } catch (err) {
      throw new ConnectionError(this.describeNetworkError(err, timeoutMs));
    }
    const answeredId = response.headers.get('x-request-id') ?? requestId;
    let body: unknown = undefined;
    if (text.length > 0) {
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
    }
    if (!response.ok) {
      const error = (body as { error?: Record<string, unknown> } | undefined)?.error;
      if (error && typeof error.message === 'string') {
        throw new GatewayError(
          error.message,
          response.status,
          str(error.type),
          str(error.code),
          str(error.param),
          str(error.request_id) ?? answeredId,
        );
      }
      throw new ConnectionError(
        `${method} ${url.pathname} answered HTTP ${response.status} without Floodgate's error shape: is ${this.baseUrl} a Floodgate gateway? (request id ${answeredId})`,
      );
    }
    if (response.status === 204 || text.length === 0) return undefined as T;
    if (body === undefined) {
      throw new ConnectionError(
        `${method} ${url.pathname} answered something that is not JSON: is ${this.baseUrl} a Floodgate gateway? (request id ${answeredId})`,
      );
    }
    return body as T;
  }

  private describeNetworkError(err: unknown, timeoutMs: number): string {
    const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
    if (e?.name === 'TimeoutError' || e?.name === 'AbortError') {
      return `the gateway at ${this.baseUrl} did not answer within ${Math.round(timeoutMs / 1000)} s`;
    }
    const cause = e?.cause?.message || e?.cause?.code || e?.message || String(err);
    return `cannot reach the gateway at ${this.baseUrl} (${cause}): is it running? Set FLOODGATE_URL or --url`;
  }
}

function str(value: unknown): string | null {
  return typeof value === 'string' && value.length > 0 ? value : null;
}
