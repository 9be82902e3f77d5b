import type { IncomingHttpHeaders } from 'node:http';

/** Client request headers that may travel upstream; everything else (credentials, cookies, hop-by-hop, unknown x-*) stays here. */
const FORWARDED_REQUEST_HEADERS = new Set([
  'accept',
  'content-type',
  'user-agent',
  'traceparent',
  'tracestate',
  'openai-beta',
]);

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

export function upstreamRequestHeaders(
  client: IncomingHttpHeaders,
  upstreamKey: string,
  extra: Record<string, string>,
  requestId: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = client[name];
    if (typeof value === 'string' && HEADER_VALUE_OK.test(value)) out[name] = value;
  }
  for (const name in extra) {
    const value = extra[name]!;
    const lower = name.toLowerCase();
    if (
      lower === 'authorization' ||
      lower === 'host' ||
      lower === 'content-length' ||
      !HEADER_VALUE_OK.test(value)
    )
      continue;
    out[lower] = value;
  }
  out['content-type'] = 'application/json';
  out['accept-encoding'] = 'identity';
  out['x-request-id'] = requestId;
  out.authorization = `Bearer ${upstreamKey}`;
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
      lower.startsWith('proxy-')
    )
      continue;
    out[lower] = Array.isArray(value) ? value.join(', ') : value;
  }
  const upstreamId = upstream['x-request-id'];
  if (typeof upstreamId === 'string') out['x-upstream-request-id'] = upstreamId;
  return out;
}
