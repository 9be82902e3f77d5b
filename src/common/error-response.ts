import { HttpException } from '@nestjs/common';
import { ApiError, defaultsForStatus, type ErrorBody } from './api-error.js';

export interface ErrorResponse {
  status: number;
  body: ErrorBody;
  headers: Record<string, string>;
  /** true when the failure is ours (5xx that is not an upstream/dependency answer): log it with its stack. */
  unexpected: boolean;
}

function messageOf(response: unknown, fallback: string): string {
  if (typeof response === 'string') return response;
  if (response && typeof response === 'object' && 'message' in response) {
    const m = (response as { message: unknown }).message;
    if (Array.isArray(m)) return m.join('; ');
    if (typeof m === 'string') return m;
  }
  return fallback;
}

/**
 * Turns anything thrown into CONTRACT.md's error shape. Shared by the Nest exception filter and
 * Fastify's own error handler (errors raised before routing: body parsing, size limits).
 */
const CONNECTIVITY_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  '57P01',
  '57P02',
  '57P03',
  '53300',
]);
// pg / TypeORM connection failures, and ioredis' own: a disconnected fail-fast connection, a command
// timeout, retries exhausted.
const CONNECTIVITY_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Connection is closed|Stream isn't writeable|connect ECONNREFUSED|Command timed out|Reached the max retries per request limit|Cluster isn't ready|Cluster is ended|None of startup nodes is available|^CLUSTERDOWN|^TRYAGAIN|Too many Cluster redirections/;

/** A dependency (Postgres, Redis) that could not be reached — an outage, not a bug: 503, not 500. */
export function isConnectivityError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 4; depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && (CONNECTIVITY_CODES.has(code) || code.startsWith('08'))) return true;
    if (typeof message === 'string' && CONNECTIVITY_MESSAGES.test(message)) return true;
    e = (e as { driverError?: unknown; cause?: unknown }).driverError ?? (e as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * Paths whose clients are Anthropic SDKs (the Messages API): their error body also carries
 * Anthropic's top-level `"type": "error"` — `{"type":"error","error":{type,code,message,param,request_id}}`,
 * which an Anthropic SDK reads as its own error shape (docs/relay.md "Anthropic providers and the Messages API").
 */
const ANTHROPIC_ERROR_PATHS = new Set(['/v1/messages']);

export type ClientErrorBody = ErrorBody | ({ type: 'error' } & ErrorBody);

/** The error body for a request to `url`: the one error shape, with `"type": "error"` on the Anthropic paths. */
export function errorBodyFor(url: string | undefined, body: ErrorBody): ClientErrorBody {
  if (url === undefined) return body;
  const q = url.indexOf('?');
  return ANTHROPIC_ERROR_PATHS.has(q === -1 ? url : url.slice(0, q)) ? { type: 'error', ...body } : body;
}

export function toErrorResponse(err: unknown, requestId: string): ErrorResponse {
  if (!(err instanceof ApiError) && !(err instanceof HttpException) && isConnectivityError(err)) {
    return {
      status: 503,
      headers: { 'retry-after': '2' },
      unexpected: false,
      body: {
        error: {
          type: 'service_unavailable_error',
          code: 'dependency_unavailable',
          message: 'A backing service (database or state store) is unavailable; retry shortly',
          param: null,
          request_id: requestId,
        },
      },
    };
  }
  if (err instanceof ApiError) {
    return {
      status: err.status,
      headers: err.headers,
      unexpected: false,
      body: {
        error: {
          type: err.type,
          code: err.code,
          message: err.message,
          param: err.param,
          request_id: requestId,
        },
      },
    };
  }
  let status = 500;
  let message = 'Internal server error';
  let code: string | undefined;
  if (err instanceof HttpException) {
    status = err.getStatus();
    message = status >= 500 ? message : messageOf(err.getResponse(), err.message);
    if (status === 400 && /not valid JSON|Unexpected token|JSON at position/.test(message)) {
      // Fastify's body parser failure, wrapped by Nest.
      message = 'Request body is not valid JSON';
      code = 'invalid_json';
    }
  } else if (err && typeof err === 'object' && 'statusCode' in err) {
    // Fastify errors (FST_ERR_CTP_BODY_TOO_LARGE, invalid JSON, unsupported media type, ...).
    const e = err as { statusCode: number; message?: string; code?: string };
    if (Number.isInteger(e.statusCode) && e.statusCode >= 400 && e.statusCode < 500) {
      status = e.statusCode;
      message = fastifyMessage(e.code, e.message);
      code =
        e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY'
          ? 'invalid_json'
          : e.code === 'FST_ERR_BAD_URL'
            ? 'invalid_url'
            : undefined;
    }
  } else if (err instanceof SyntaxError && /JSON/.test(err.message)) {
    status = 400;
    message = 'Request body is not valid JSON';
    code = 'invalid_json';
  }
  const defaults = defaultsForStatus(status);
  return {
    status,
    headers: {},
    unexpected: status >= 500,
    body: {
      error: {
        type: defaults.type,
        code: code ?? defaults.code,
        message,
        param: null,
        request_id: requestId,
      },
    },
  };
}

function fastifyMessage(code: string | undefined, message: string | undefined): string {
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'Request body is too large';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'Unsupported Content-Type: send application/json';
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'Request body is not valid JSON';
    // Fastify's own messages for these two quote the whole URL: never echo it.
    case 'FST_ERR_BAD_URL':
      return 'The URL path is not valid percent-encoded UTF-8';
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return 'A path parameter in the URL is too long';
    default:
      return message ?? 'Bad request';
  }
}
