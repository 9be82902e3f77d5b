import { createHash, randomBytes } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { Priority, Role } from '../../src/common/principal.js';
import { getJson } from './gateway.js';

/** A fresh, valid client API key (`fg_` + 43 base64url characters), e.g. for ADMIN_BOOTSTRAP_KEY. */
export function newApiKey(): string {
  return `fg_${randomBytes(32).toString('base64url')}`;
}

/** The stored form of a key (what api_keys.key_hash holds). */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/**
 * Headers carrying a key (or JWT) as `Authorization: Bearer …`, with a JSON content type when
 * `json` (use that for requests with a body: Fastify refuses a JSON content type on an empty body).
 */
export function bearer(credential: string, json = true): Record<string, string> {
  return json
    ? { authorization: `Bearer ${credential}`, 'content-type': 'application/json' }
    : { authorization: `Bearer ${credential}` };
}

export interface KeyOptions {
  name?: string;
  role?: Role;
  limits?: { rpm?: number | null; tpm?: number | null };
  allowed_models?: string[] | null;
  max_priority?: Priority;
  expires_at?: string | null;
}

export interface UserWithKey {
  /** The user as returned by POST /api/admin/users. */
  user: { id: string; email: string; role: Role; [field: string]: unknown };
  /** The raw API key (use it as `Authorization: Bearer <key>` or `x-api-key`). */
  key: string;
  keyId: string;
  /** `Authorization: Bearer <key>` only: for GET and DELETE. */
  headers: Record<string, string>;
  /** The same plus `content-type: application/json`: for requests with a JSON body. */
  jsonHeaders: Record<string, string>;
}

/**
 * Creates a user with `role` through the admin API (authenticated with `adminKey`) and an API key
 * for them, whose role defaults to the user's. Throws with the response body when a call fails,
 * so a test never goes on with a half-made fixture.
 */
export async function createUserWithKey(
  gw: { url: string },
  adminKey: string,
  role: Role,
  options: { email?: string; name?: string; key?: KeyOptions } = {},
): Promise<UserWithKey> {
  const email = options.email ?? `${role}-${randomBytes(6).toString('hex')}@test.floodgate`;
  const created = await getJson(`${gw.url}/api/admin/users`, {
    method: 'POST',
    headers: bearer(adminKey),
    body: JSON.stringify({ email, role, ...(options.name ? { name: options.name } : {}) }),
  });
  if (created.status !== 201)
    throw new Error(`creating a ${role} user failed: ${created.status} ${JSON.stringify(created.body)}`);
  const key = await getJson(`${gw.url}/api/admin/users/${created.body.id}/keys`, {
    method: 'POST',
    headers: bearer(adminKey),
    body: JSON.stringify({ name: `${role}-key`, ...options.key }),
  });
  if (key.status !== 201)
    throw new Error(`creating a key for the ${role} user failed: ${key.status} ${JSON.stringify(key.body)}`);
  return {
    user: created.body,
    key: key.body.key,
    keyId: key.body.id,
    headers: bearer(key.body.key, false),
    jsonHeaders: bearer(key.body.key),
  };
}

export interface JwtClaims {
  sub?: string;
  email?: string;
  name?: string;
  role?: string;
  aud?: string | string[];
  iss?: string;
  exp?: number;
  [claim: string]: unknown;
}

/** Signs an HS256 JWT for a gateway started with JWT_SECRET (`exp` defaults to 5 minutes from now). */
export function signHs256(secret: string, claims: JwtClaims, options: { noExp?: boolean } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const payload = { aud: 'floodgate', iat: now, ...(options.noExp ? {} : { exp: now + 300 }), ...claims };
  return jwt.sign(payload, secret, { algorithm: 'HS256' });
}
