import { ApiError } from '../common/api-error.js';
import { unstorableReason } from '../common/input-safety.js';
import { ROLES, type Role } from '../common/principal.js';

/** Who a verified token says the caller is. */
export interface JwtIdentity {
  subject: string;
  email: string | null;
  name: string | null;
  /** Used only when the user is provisioned; afterwards the users table is authoritative. */
  role: Role;
}

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

/**
 * Claims → identity, after the signature, `exp`, `aud` and `iss` were verified by jsonwebtoken.
 * `exp` and `sub` are required (jsonwebtoken accepts a token without `exp`, we do not); a missing
 * `role` maps to `user`, an unknown or mis-cased one refuses the token; a malformed `email` or `name`
 * is dropped, never trusted; a `sub`, `email` or `name` Postgres can't store (NUL, unpaired
 * surrogates) makes the token invalid.
 */
export function identityFromClaims(payload: unknown): JwtIdentity {
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) {
    throw ApiError.unauthorized('Invalid token payload', 'invalid_token');
  }
  const claims = payload as Record<string, unknown>;
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) {
    throw ApiError.unauthorized('Token has no expiry: the exp claim is required', 'invalid_token');
  }
  const sub = claims.sub;
  if (typeof sub !== 'string' || sub.trim() === '' || sub.length > 255) {
    throw ApiError.unauthorized('Token has no subject: the sub claim is required', 'invalid_token');
  }
  // A signed token whose identity claims can't be stored (NUL, unpaired surrogates) is refused
  // outright rather than half-trusted: nothing legitimate issues one.
  for (const claim of ['sub', 'email', 'name'] as const) {
    const value = claims[claim];
    if (typeof value === 'string' && unstorableReason(value)) {
      throw ApiError.unauthorized(
        `Invalid token: the ${claim} claim contains ${unstorableReason(value)}`,
        'invalid_token',
      );
    }
  }
  const email =
    typeof claims.email === 'string' && claims.email.length <= 320 && EMAIL.test(claims.email.trim())
      ? claims.email.trim().toLowerCase()
      : null;
  const name =
    typeof claims.name === 'string' && claims.name.trim() !== '' ? claims.name.trim().slice(0, 200) : null;
  // A role claim is an exact value of the enum: "ADMIN", "Admin" or "superuser" grant nothing, not
  // even a guessed role; the token is refused and nobody is provisioned. No claim at all: `user`.
  let role: Role = 'user';
  if (claims.role !== undefined) {
    if (typeof claims.role !== 'string' || !(ROLES as readonly string[]).includes(claims.role)) {
      throw ApiError.unauthorized(
        `Token role claim must be one of ${ROLES.join(', ')} (exactly, lower case), got ${JSON.stringify(claims.role).slice(0, 40)}`,
        'invalid_token',
      );
    }
    role = claims.role as Role;
  }
  return { subject: sub, email, name, role };
}
