/**
 * Secrets taken out of captured request and response bodies before they are stored
 * (docs/requests.md "What is redacted"). Pure: text in, text out. Patterns, in order:
 *
 * - OpenAI / Anthropic style keys: `sk-…` (also `sk-proj-…`, `sk-ant-api03-…`), 16+ characters, even
 *   glued to a preceding word (over-redacting is the safe side);
 * - Floodgate client keys: `fg_…`, 20+ characters;
 * - `Bearer <token>` (the token);
 * - the value of an `x-api-key`, `api_key`/`api-key`/`apikey`, `authorization`, `password`, `secret`
 *   or `aws_secret_access_key` field, as JSON (`"x-api-key": "…"`) or as a header / env line
 *   (`x-api-key: …`, `AWS_SECRET_ACCESS_KEY=…`);
 * - AWS access key ids (`AKIA…` / `ASIA…` + 16) and Google API keys (`AIza…` + 35).
 *
 * Each becomes `[REDACTED]` (a Bearer token: `Bearer [REDACTED]`; a named field keeps its name).
 */
export const REDACTED = '[REDACTED]';

const FIELD = String.raw`(?:x[-_]api[-_]key|api[-_]?key|authorization|password|secret|aws[-_]secret[-_]access[-_]key)`;

const RULES: readonly [RegExp, string][] = [
  // "field": "value" (JSON; the value's escaped quotes stay inside it)
  [new RegExp(String.raw`("${FIELD}"\s*:\s*")(?:[^"\\]|\\.)*(")`, 'gi'), `$1${REDACTED}$2`],
  // field: value / field=value (headers, env lines, query strings)
  [new RegExp(String.raw`(\b${FIELD}\s*[:=]\s*)(?!\s*")(?!Bearer\b)[^\s"',;&]+`, 'gi'), `$1${REDACTED}`],
  [/\bBearer\s+[A-Za-z0-9._~+/=-]{8,}/g, `Bearer ${REDACTED}`],
  [/sk-[A-Za-z0-9_-]{16,}/g, REDACTED],
  [/fg_[A-Za-z0-9_-]{20,}/g, REDACTED],
  [/\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g, REDACTED],
  [/\bAIza[0-9A-Za-z_-]{35}/g, REDACTED],
];

export function redactSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of RULES) out = out.replace(pattern, replacement);
  return out;
}

/**
 * The text cut to at most `maxBytes` of UTF-8 (never inside a character), as a fresh string (not a
 * slice that keeps a large parent alive).
 */
export function capUtf8(text: string, maxBytes: number): { text: string; truncated: boolean } {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return { text: bytes.toString('utf8'), truncated: false };
  let end = maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return { text: bytes.subarray(0, end).toString('utf8'), truncated: true };
}
