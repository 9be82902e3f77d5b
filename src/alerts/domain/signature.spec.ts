import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signBody, verifySignature } from './signature.js';

describe('signBody', () => {
  it('is sha256= followed by the hex HMAC-SHA256 of the exact bytes', () => {
    const body = '{"id":"e1","type":"key.cooling","created_at":"2026-01-01T00:00:00.000Z","data":{}}';
    const expected = createHmac('sha256', 'whsec_test').update(body).digest('hex');
    expect(signBody('whsec_test', body)).toBe(`sha256=${expected}`);
    // a known vector (RFC 4231 style check of the encoding, computed once)
    expect(signBody('key', 'The quick brown fox jumps over the lazy dog')).toBe(
      'sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8',
    );
  });

  it('signs bytes and the equal string alike, and changes with any byte or the secret', () => {
    const body = '{"a":"é"}';
    expect(signBody('s', Buffer.from(body, 'utf8'))).toBe(signBody('s', body));
    expect(signBody('s', '{"a":"e"}')).not.toBe(signBody('s', body));
    expect(signBody('t', body)).not.toBe(signBody('s', body));
  });
});

describe('verifySignature', () => {
  const body = '{"x":1}';
  it('accepts the right signature and refuses wrong, malformed or missing ones', () => {
    expect(verifySignature('s', body, signBody('s', body))).toBe(true);
    expect(verifySignature('s', body, signBody('other', body))).toBe(false);
    expect(verifySignature('s', '{"x":2}', signBody('s', body))).toBe(false);
    expect(verifySignature('s', body, signBody('s', body).toUpperCase())).toBe(false);
    expect(verifySignature('s', body, signBody('s', body).slice(7))).toBe(false);
    expect(verifySignature('s', body, undefined)).toBe(false);
  });
});
