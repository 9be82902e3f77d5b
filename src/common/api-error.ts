import { HttpStatus } from '@nestjs/common';

/** The `type` values of CONTRACT.md's one error shape. */
export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'rate_limit_error'
  | 'queue_full_error'
  | 'upstream_error'
  | 'upstream_timeout_error'
  | 'service_unavailable_error'
  | 'internal_error';

export interface ErrorBody {
  error: {
    type: ErrorType;
    code: string;
    message: string;
    param: string | null;
    request_id: string;
  };
}

/**
 * The one error every layer throws when it means to answer with a specific status and message.
 * Anything else that escapes a handler becomes a 500 with no detail (see all-exceptions.filter.ts).
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  static badRequest(message: string, param: string | null = null, code = 'invalid_request'): ApiError {
    return new ApiError(HttpStatus.BAD_REQUEST, 'invalid_request_error', code, message, param);
  }
  static unauthorized(message: string, code = 'unauthorized'): ApiError {
    return new ApiError(HttpStatus.UNAUTHORIZED, 'authentication_error', code, message, null, {
      'www-authenticate': 'Bearer',
    });
  }
  static forbidden(message: string, code = 'forbidden'): ApiError {
    return new ApiError(HttpStatus.FORBIDDEN, 'permission_error', code, message);
  }
  static notFound(message: string, code = 'not_found', param: string | null = null): ApiError {
    return new ApiError(HttpStatus.NOT_FOUND, 'invalid_request_error', code, message, param);
  }
  static conflict(message: string, param: string | null = null, code = 'conflict'): ApiError {
    return new ApiError(HttpStatus.CONFLICT, 'invalid_request_error', code, message, param);
  }
  static serviceUnavailable(
    message: string,
    retryAfterSeconds?: number,
    code = 'service_unavailable',
  ): ApiError {
    const headers: Record<string, string> = retryAfterSeconds
      ? { 'retry-after': String(retryAfterSeconds) }
      : {};
    return new ApiError(
      HttpStatus.SERVICE_UNAVAILABLE,
      'service_unavailable_error',
      code,
      message,
      null,
      headers,
    );
  }
}

/** Default type and code for a bare HTTP status (Nest's HttpExceptions, Fastify's own errors). */
export function defaultsForStatus(status: number): { type: ErrorType; code: string } {
  switch (status) {
    case 400:
      return { type: 'invalid_request_error', code: 'invalid_request' };
    case 401:
      return { type: 'authentication_error', code: 'unauthorized' };
    case 403:
      return { type: 'permission_error', code: 'forbidden' };
    case 404:
      return { type: 'invalid_request_error', code: 'not_found' };
    case 405:
      return { type: 'invalid_request_error', code: 'method_not_allowed' };
    case 409:
      return { type: 'invalid_request_error', code: 'conflict' };
    case 413:
      return { type: 'invalid_request_error', code: 'payload_too_large' };
    case 414:
      return { type: 'invalid_request_error', code: 'uri_too_long' };
    case 415:
      return { type: 'invalid_request_error', code: 'unsupported_media_type' };
    case 429:
      return { type: 'rate_limit_error', code: 'rate_limit_exceeded' };
    case 502:
      return { type: 'upstream_error', code: 'upstream_error' };
    case 503:
      return { type: 'service_unavailable_error', code: 'service_unavailable' };
    case 504:
      return { type: 'upstream_timeout_error', code: 'upstream_timeout' };
    default:
      return status >= 500
        ? { type: 'internal_error', code: 'internal_error' }
        : { type: 'invalid_request_error', code: 'invalid_request' };
  }
}
