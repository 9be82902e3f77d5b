import { generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { describe, expect, it } from 'vitest';
import { jwtFailure } from './jwt-errors.js';

const secret = 's'.repeat(32);
const now = Math.floor(Date.now() / 1000);
const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();

/** The error jsonwebtoken itself raises for a token, as passport-jwt would hand it over. */
function failureOf(token: string, key: string, options: jwt.VerifyOptions): unknown {
  try {
    jwt.verify(token, key, options);
  } catch (err) {
    return err;
  }
  throw new Error('token unexpectedly verified');
}

const sign = (payload: object, key = secret, algorithm: jwt.Algorithm = 'HS256'): string =>
  jwt.sign(payload, key, { algorithm });
const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('jsonwebtoken failures → fixed 401 messages', () => {
  it.each([
    ['expired', sign({ sub: 'a', exp: now - 60 }), secret, {}, 'Token has expired'],
    [
      'bad signature',
      sign({ sub: 'a', exp: now + 60 }, 'x'.repeat(32)),
      secret,
      {},
      'Invalid token signature',
    ],
    [
      'wrong audience',
      sign({ sub: 'a', exp: now + 60, aud: 'other' }),
      secret,
      { audience: 'floodgate' },
      'Invalid token audience',
    ],
    [
      'wrong issuer',
      sign({ sub: 'a', exp: now + 60, iss: 'evil' }),
      secret,
      { issuer: 'https://idp' },
      'Invalid token issuer',
    ],
    [
      'disallowed algorithm',
      sign({ sub: 'a', exp: now + 60 }, secret, 'HS512'),
      secret,
      {},
      'Invalid token algorithm',
    ],
    [
      'alg none',
      `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'a', exp: now + 60 })}.`,
      secret,
      {},
      'alg none',
    ],
    [
      'HS256 with an RSA public key',
      sign({ sub: 'a', exp: now + 60 }),
      publicPem,
      { algorithms: ['RS256'] },
      'Invalid token algorithm',
    ],
    ['malformed', 'not-a-jwt', secret, {}, 'Malformed token'],
    ['not yet valid', sign({ sub: 'a', exp: now + 60, nbf: now + 30 }), secret, {}, 'Token is not valid yet'],
  ])('%s', (_name, token, key, options, message) => {
    const err = jwtFailure(failureOf(token, key, { algorithms: ['HS256'], ...options } as jwt.VerifyOptions));
    expect(err.status).toBe(401);
    expect(err.type).toBe('authentication_error');
    expect(err.message).toContain(message);
    expect(err.message).not.toContain(token.slice(0, 20));
  });

  it('passport-jwt "No auth token" → Authorization header is missing; anything unknown → Invalid token', () => {
    expect(jwtFailure(new Error('No auth token')).message).toBe('Authorization header is missing');
    expect(jwtFailure(new Error('something else')).message).toBe('Invalid token');
    expect(jwtFailure(undefined).message).toBe('Invalid token');
  });
});
