import { ApiError } from '../common/api-error.js';

/**
 * jsonwebtoken's failures → one fixed 401 message each. Its own messages are never passed on (they
 * name expected audiences and issuers) and the token itself is never echoed.
 */
export function jwtFailure(info: unknown): ApiError {
  if (info instanceof ApiError) return info;
  const name = info instanceof Error ? info.name : '';
  const message = info instanceof Error ? info.message : '';
  if (name === 'TokenExpiredError') return ApiError.unauthorized('Token has expired', 'token_expired');
  if (name === 'NotBeforeError') return ApiError.unauthorized('Token is not valid yet', 'invalid_token');
  if (message === 'No auth token')
    return ApiError.unauthorized('Authorization header is missing', 'missing_credentials');
  if (message === 'invalid signature')
    return ApiError.unauthorized('Invalid token signature', 'invalid_token');
  if (message === 'jwt signature is required') {
    return ApiError.unauthorized('Unsigned tokens (alg none) are not accepted', 'invalid_token');
  }
  if (message.startsWith('jwt audience invalid'))
    return ApiError.unauthorized('Invalid token audience', 'invalid_token');
  if (message.startsWith('jwt issuer invalid'))
    return ApiError.unauthorized('Invalid token issuer', 'invalid_token');
  if (
    message === 'invalid algorithm' ||
    message.startsWith('secretOrPublicKey must be') ||
    /"alg"|algorithm/i.test(message)
  ) {
    return ApiError.unauthorized('Invalid token algorithm', 'invalid_token');
  }
  if (message === 'jwt malformed' || message === 'invalid token' || message.startsWith('jwt must be')) {
    return ApiError.unauthorized('Malformed token', 'invalid_token');
  }
  return ApiError.unauthorized('Invalid token', 'invalid_token');
}
