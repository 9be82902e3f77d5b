import { describe, expect, it } from 'vitest';
import { clientResponseHeaders, DEFAULT_ANTHROPIC_VERSION, upstreamRequestHeaders } from './headers.js';

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

describe('upstreamRequestHeaders for an anthropic provider', () => {
  const sdk = {
    'x-api-key': 'fg_client',
    'anthropic-version': '2024-10-22',
    'anthropic-beta': 'prompt-caching-2024-07-31',
    'openai-beta': 'assistants=v2',
    'content-type': 'application/json',
    'user-agent': 'Anthropic/JS 0.30.0',
  };

  it('sends the upstream key as x-api-key, the client’s anthropic-version and -beta, never authorization', () => {
    const out = upstreamRequestHeaders(sdk, 'sk-ant-up', {}, 'req-1', 'anthropic', 'messages');
    expect(out).toEqual({
      'content-type': 'application/json',
      'user-agent': 'Anthropic/JS 0.30.0',
      'anthropic-beta': 'prompt-caching-2024-07-31',
      'anthropic-version': '2024-10-22',
      'accept-encoding': 'identity',
      'x-request-id': 'req-1',
      'x-api-key': 'sk-ant-up',
    });
    expect(out.authorization).toBeUndefined();
  });

  it('defaults anthropic-version to 2023-06-01 (none sent, not a date, or not on /v1/messages)', () => {
    const { 'anthropic-version': _v, ...noVersion } = sdk;
    expect(
      upstreamRequestHeaders(noVersion, 'k', {}, 'r', 'anthropic', 'messages')['anthropic-version'],
    ).toBe(DEFAULT_ANTHROPIC_VERSION);
    expect(DEFAULT_ANTHROPIC_VERSION).toBe('2023-06-01');
    expect(
      upstreamRequestHeaders(
        { ...sdk, 'anthropic-version': 'latest' },
        'k',
        {},
        'r',
        'anthropic',
        'messages',
      )['anthropic-version'],
    ).toBe('2023-06-01');
    expect(upstreamRequestHeaders(sdk, 'k', {}, 'r', 'anthropic', 'chat')['anthropic-version']).toBe(
      '2023-06-01',
    );
  });

  it('takes a provider-configured anthropic-version over the default, never its credentials', () => {
    const out = upstreamRequestHeaders(
      {},
      'k',
      { 'Anthropic-Version': '2023-01-01', 'X-Api-Key': 'evil', Authorization: 'Bearer evil' },
      'r',
      'anthropic',
      'chat',
    );
    expect(out['anthropic-version']).toBe('2023-01-01');
    expect(out['x-api-key']).toBe('k');
    expect(out.authorization).toBeUndefined();
  });

  it('an openai provider gets neither anthropic header nor x-api-key', () => {
    const out = upstreamRequestHeaders(sdk, 'sk-up', {}, 'r', 'openai', 'chat');
    expect(out.authorization).toBe('Bearer sk-up');
    expect(out['openai-beta']).toBe('assistants=v2');
    expect(out['anthropic-version']).toBeUndefined();
    expect(out['anthropic-beta']).toBeUndefined();
    expect(out['x-api-key']).toBeUndefined();
  });
});

describe('clientResponseHeaders', () => {
  it('drops anthropic-ratelimit-* (the pool’s limits, like x-ratelimit-*)', () => {
    expect(
      clientResponseHeaders({ 'anthropic-ratelimit-requests-remaining': '0', 'request-id': 'req_1' }),
    ).toEqual({ 'request-id': 'req_1' });
  });

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
