/**
 * Provider header values as callers see them (docs/key-pool.md "Extra upstream headers").
 *
 * Header values are not meant to hold credentials (those are upstream keys, refused as headers at
 * write time), but a custom header may still carry something secret. Callers who may edit providers
 * (`providers` write: admins) read the values to edit them; everyone else gets each value the way an
 * upstream key's value is always shown, `maskKey`'s preview (`…`, `…xy`, or `org-…ijkl`), and
 * `headers_redacted: true`.
 *
 * Every preview contains `…` (U+2026), which is not a valid HTTP header character (RFC 9110 field
 * values are visible ASCII and obs-text, and a JavaScript `…` is not one byte): a written value
 * containing it is a preview sent back, never a real value, and is refused (400), so a redacted
 * placeholder can never replace the value it stands for.
 */

import { maskKey } from './key-cipher.js';

/** The one character every redacted preview contains. */
export const REDACTION_MARK = '…';

/** Header names with their values replaced by previews (insertion order kept). */
export function redactHeaderValues(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) out[name] = maskKey(value);
  return out;
}

/** Whether a submitted header value is (or contains) a redacted preview. */
export function isRedactedPlaceholder(value: string): boolean {
  return value.includes(REDACTION_MARK);
}
