import type { ErrorType } from '../../common/api-error.js';

/**
 * An answer the relay gives instead of the upstream's: status, the one error shape's type / code /
 * message / param, and the headers that go with it. A plain value: the domain rules decide it, the
 * services throw it (as an ApiError, see stages/reject.ts).
 */
export interface Rejection {
  status: number;
  type: ErrorType;
  code: string;
  message: string;
  param: string | null;
  headers: Record<string, string>;
}

/** A rule's verdict: the value it accepted, or why not. */
export type Verdict<T> = { ok: true; value: T } | { ok: false; rejection: Rejection };

export function rejection(
  status: number,
  type: ErrorType,
  code: string,
  message: string,
  options: { retryAfterSeconds?: number; shouldRetry?: boolean; param?: string | null } = {},
): Rejection {
  const headers: Record<string, string> = {};
  if (options.retryAfterSeconds !== undefined)
    headers['retry-after'] = String(Math.max(1, Math.ceil(options.retryAfterSeconds)));
  if (options.shouldRetry !== undefined) headers['x-should-retry'] = String(options.shouldRetry);
  return { status, type, code, message, param: options.param ?? null, headers };
}

export const badRequest = (message: string, param: string | null, code: string): Rejection =>
  rejection(400, 'invalid_request_error', code, message, { param });

export const forbidden = (message: string, code: string): Rejection =>
  rejection(403, 'permission_error', code, message);

export const clientClosed = (): Rejection =>
  rejection(499, 'invalid_request_error', 'client_closed_request', 'Client closed the request');

export const modelNotFound = (model: string): Rejection =>
  rejection(
    404,
    'invalid_request_error',
    'model_not_found',
    `The model \`${model.slice(0, 256)}\` does not exist or you do not have access to it.`,
    { param: 'model' },
  );
