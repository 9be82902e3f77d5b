import { createHmac, timingSafeEqual } from 'node:crypto';

/** The header carrying a delivery's signature: `sha256=<hex>`. */
export const SIGNATURE_HEADER = 'x-floodgate-signature';

/**
 * `sha256=<hex HMAC-SHA256 of the exact body bytes, keyed by the webhook's secret>` — what a
 * receiver recomputes over the raw request body (before any JSON parsing) and compares.
 */
export function signBody(secret: string, body: string | Uint8Array): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Constant-time check of a received `x-floodgate-signature` value against the body. */
export function verifySignature(
  secret: string,
  body: string | Uint8Array,
  header: string | undefined,
): boolean {
  if (typeof header !== 'string' || !/^sha256=[0-9a-f]{64}$/.test(header)) return false;
  const expected = Buffer.from(signBody(secret, body), 'utf8');
  const given = Buffer.from(header, 'utf8');
  return expected.length === given.length && timingSafeEqual(expected, given);
}
