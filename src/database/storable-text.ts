/**
 * Text Postgres can store: NUL (which no Postgres text column accepts) and lone UTF-16 surrogates
 * (which are not valid UTF-8) become U+FFFD, and the result is cut to `maxChars` characters (code
 * points, as varchar(n) counts them — never half of a surrogate pair). Every batched writer runs
 * its text columns through this, so one odd byte from a client can never make a batch unstorable.
 */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const LONE_SURROGATE_ALL = new RegExp(LONE_SURROGATE.source, 'g');

export function storableText(value: string, maxChars?: number): string;
export function storableText(value: string | null, maxChars?: number): string | null;
export function storableText(value: string | null, maxChars?: number): string | null {
  if (value === null) return null;
  let s = value.includes('\u0000') ? value.replaceAll('\u0000', '\ufffd') : value;
  if (LONE_SURROGATE.test(s)) s = s.replace(LONE_SURROGATE_ALL, '\ufffd');
  if (maxChars !== undefined && s.length > maxChars) {
    // length counts UTF-16 units; only a string longer than maxChars units can exceed maxChars characters
    const chars = Array.from(s);
    if (chars.length > maxChars) s = chars.slice(0, maxChars).join('');
  }
  return s;
}
