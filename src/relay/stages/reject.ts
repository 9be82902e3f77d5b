import { ApiError } from '../../common/api-error.js';
import type { Rejection, Verdict } from '../domain/rejection.js';

/** A domain rejection as the error the exception filter answers with. */
export function reject(r: Rejection, extraHeaders?: Record<string, string>): ApiError {
  return new ApiError(
    r.status,
    r.type,
    r.code,
    r.message,
    r.param,
    extraHeaders ? { ...extraHeaders, ...r.headers } : r.headers,
  );
}

/** The accepted value of a rule's verdict; throws its rejection otherwise. */
export function accept<T>(verdict: Verdict<T>): T {
  if (!verdict.ok) throw reject(verdict.rejection);
  return verdict.value;
}
