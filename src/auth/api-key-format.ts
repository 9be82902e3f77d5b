import { hash, randomBytes } from 'node:crypto';
import { API_KEY_PATTERN } from '../config/app-config.js';

/** Client API keys: `fg_` + 32 random bytes in base64url (43 characters), 256 bits of entropy. */
export const API_KEY_PREFIX = 'fg_';
export const API_KEY_DISPLAY_PREFIX_LENGTH = 8;

export interface ApiKeyMaterial {
  /** The key itself: shown once, never stored, never logged. */
  raw: string;
  /** Hex SHA-256 of `raw`: what the database holds and what lookups use. */
  hash: string;
  /** First 8 characters, for display (`fg_` + 5). */
  prefix: string;
  last4: string;
}

export function generateApiKey(): ApiKeyMaterial {
  return describeApiKey(API_KEY_PREFIX + randomBytes(32).toString('base64url'));
}

/** Splits a raw key into what may be stored. The caller has checked the format. */
export function describeApiKey(raw: string): ApiKeyMaterial {
  return {
    raw,
    hash: hashApiKey(raw),
    prefix: raw.slice(0, API_KEY_DISPLAY_PREFIX_LENGTH),
    last4: raw.slice(-4),
  };
}

/**
 * SHA-256 is right for keys (unlike passwords): they carry 256 random bits, so no slow hash is
 * needed, and a lookup by hash is an indexed equality — no raw string is ever compared.
 */
export function hashApiKey(raw: string): string {
  // One-shot crypto.hash: the same digest without building a Hash object per request.
  return hash('sha256', raw, 'hex');
}

export function isApiKeyFormat(value: string): boolean {
  return value.length === 46 && API_KEY_PATTERN.test(value);
}

/** How a key is shown after creation: `fg_AbCdE…wxyz`. */
export function maskApiKey(prefix: string, last4: string): string {
  return `${prefix}…${last4}`;
}
