import { describe, expect, it } from 'vitest';
import { clientResponseHeaders, upstreamRequestHeaders } from './headers.js';

describe('upstreamRequestHeaders', () => {
  it('forwards only known headers, injects the upstream key and never the client credentials', () => {
    const out = upstreamRequestHeaders(
      {
        authorization: 'Bearer fg_client',
        'x-api-key': 'fg_client',
        cookie: 'a=b',
        connection: 'keep-alive',
        'x-internal-secret': 'nope',
        'user-agent': 'OpenAI/JS 6.0',
        accept: 'text/event-stream',
        host: 'gateway',
        traceparent: '00-abc-def-01',
      },
      'sk-upstream',
      { 'X-Org': 'team-a', Authorization: 'Bearer evil', Host: 'x' },
      'req-1',
    );
    expect(out).toEqual({
      accept: 'text/event-stream',
      'user-agent': 'OpenAI/JS 6.0',
      traceparent: '00-abc-def-01',
      'x-org': 'team-a',
      'content-type': 'application/json',
      'accept-encoding': 'identity',
      'x-request-id': 'req-1',
      authorization: 'Bearer sk-upstream',
    });
  });

  it('drops header values carrying CR/LF', () => {
    const out = upstreamRequestHeaders(
      { 'user-agent': 'a\r\nx-injected: 1' },
      'k',
      { 'x-extra': 'v\r\nevil: 1' },
      'r',
    );
    expect(out['user-agent']).toBeUndefined();
    expect(out['x-extra']).toBeUndefined();
  });
});

describe('clientResponseHeaders', () => {
  it('drops hop-by-hop, cookies, credentials and the pool limits; renames the upstream request id', () => {
    const out = clientResponseHeaders({
      'content-type': 'application/json',
      'set-cookie': ['a=b'],
      connection: 'keep-alive',
      'transfer-encoding': 'chunked',
      'x-ratelimit-remaining-requests': '0',
      'openai-processing-ms': '12',
      'x-request-id': 'up-1',
      'www-authenticate': 'Bearer',
    });
    expect(out).toEqual({
      'content-type': 'application/json',
      'openai-processing-ms': '12',
      'x-upstream-request-id': 'up-1',
    });
  });
});
