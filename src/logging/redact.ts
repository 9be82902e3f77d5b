/**
 * Paths pino removes from every log line. Credentials travel in headers and in a few body fields
 * (`key` of an upstream key, `api_key`, `secret`), and a provider's extra upstream header values may
 * hold secrets; hyphenated names need bracket notation.
 */
export const REDACT_PATHS: string[] = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers["x-api-key"]',
  '*.headers.cookie',
  'key',
  'api_key',
  'apiKey',
  'secret',
  'password',
  'token',
  '*.key',
  '*.api_key',
  '*.apiKey',
  '*.secret',
  '*.password',
  '*.token',
  'req.body.key',
  'req.body.api_key',
  'req.body.secret',
  'body.key',
  'body.api_key',
  'body.secret',
  // Provider extra upstream headers (docs/key-pool.md): names kept, every value censored, should a
  // provider, its create/patch body or a key lease ever be logged.
  'provider.headers.*',
  '*.provider.headers.*',
  'lease.headers.*',
  '*.lease.headers.*',
  'dto.headers.*',
  'req.body.headers.*',
  'body.headers.*',
];

export const REDACT_CENSOR = '[redacted]';
