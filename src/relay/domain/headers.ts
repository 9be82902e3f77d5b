import type { IncomingHttpHeaders } from 'node:http';
import type { ProviderKind } from '../../key-pool/key-pool.types.js';
import type { Endpoint } from './validation.js';

/**
 * Client request headers that may travel upstream, per provider kind; everything else (credentials,
 * cookies, hop-by-hop, unknown x-*, the other dialect's headers) stays here.
 */
const COMMON_REQUEST_HEADERS = ['accept', 'content-type', 'user-agent', 'traceparent', 'tracestate'];
const FORWARDED_REQUEST_HEADERS: Record<ProviderKind, readonly string[]> = {
  openai: [...COMMON_REQUEST_HEADERS, 'openai-beta'],
  anthropic: [...COMMON_REQUEST_HEADERS, 'anthropic-beta'],
};

/** The Messages API version sent to an anthropic provider when the client did not name one. */
export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';
/** A sane `anthropic-version` (a date, as Anthropic names its versions). */
const ANTHROPIC_VERSION_OK = /^\d{4}-\d{2}-\d{2}$/;

/** Headers an extra (provider-configured) header may never set: the credential is the upstream key's. */
const EXTRA_REFUSED = new Set(['authorization', 'x-api-key', 'host', 'content-length']);

/** Upstream response headers never returned: hop-by-hop, credentials, cookies, and the pool's own limits. */
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'set-cookie',
  'set-cookie2',
  'authorization',
  'www-authenticate',
  'content-length',
  'content-encoding',
  'retry-after',
  'x-request-id',
  'date',
  'server',
  'alt-svc',
  // never let an upstream redirect or refresh the client somewhere else
  'location',
  'content-location',
  'refresh',
  // the gateway's own rate-limit and floodgate headers are never the upstream's to set
  'ratelimit',
  'ratelimit-policy',
]);

const HEADER_VALUE_OK = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * The headers of a request to the upstream. `kind` decides the credential: `openai` →
 * `Authorization: Bearer <key>`; `anthropic` → `x-api-key: <key>` plus `anthropic-version` (the
 * client's on /v1/messages when it sent a sane one, else the provider's extra header, else
 * DEFAULT_ANTHROPIC_VERSION) and the client's `anthropic-beta` — never `authorization`.
 */
export function upstreamRequestHeaders(
  client: IncomingHttpHeaders,
  upstreamKey: string,
  extra: Record<string, string>,
  requestId: string,
  kind: ProviderKind = 'openai',
  endpoint: Endpoint | null = null,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARDED_REQUEST_HEADERS[kind]) {
    const value = client[name];
    if (typeof value === 'string' && HEADER_VALUE_OK.test(value)) out[name] = value;
  }
  for (const name in extra) {
    const value = extra[name]!;
    const lower = name.toLowerCase();
    if (EXTRA_REFUSED.has(lower) || !HEADER_VALUE_OK.test(value)) continue;
    out[lower] = value;
  }
  out['content-type'] = 'application/json';
  out['accept-encoding'] = 'identity';
  out['x-request-id'] = requestId;
  if (kind === 'anthropic') {
    const version = client['anthropic-version'];
    if (endpoint === 'messages' && typeof version === 'string' && ANTHROPIC_VERSION_OK.test(version))
      out['anthropic-version'] = version;
    else out['anthropic-version'] ??= DEFAULT_ANTHROPIC_VERSION;
    out['x-api-key'] = upstreamKey;
  } else out.authorization = `Bearer ${upstreamKey}`;
  return out;
}

export function clientResponseHeaders(
  upstream: Record<string, string | string[] | undefined>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in upstream) {
    const value = upstream[name];
    const lower = name.toLowerCase();
    if (
      value === undefined ||
      DROPPED_RESPONSE_HEADERS.has(lower) ||
      lower.startsWith('x-ratelimit-') ||
      lower.startsWith('anthropic-ratelimit-') ||
      lower.startsWith('proxy-')
    )
      continue;
    out[lower] = Array.isArray(value) ? value.join(', ') : value;
  }
  const upstreamId = upstream['x-request-id'];
  if (typeof upstreamId === 'string') out['x-upstream-request-id'] = upstreamId;
  return out;
}
