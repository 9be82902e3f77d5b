import { describe, expect, it } from 'vitest';
import { ApiError } from '../common/api-error.js';
import { identityFromClaims } from './jwt-claims.js';

const exp = Math.floor(Date.now() / 1000) + 60;

function rejection(payload: unknown): ApiError {
  try {
    identityFromClaims(payload);
  } catch (err) {
    return err as ApiError;
  }
  throw new Error('expected a rejection');
}

describe('JWT claims → user', () => {
  it('maps sub, email (lower-cased), name and role', () => {
    expect(
      identityFromClaims({
        sub: 'auth0|1',
        email: ' Ada@Example.COM ',
        name: ' Ada ',
        role: 'developer',
        exp,
      }),
    ).toEqual({
      subject: 'auth0|1',
      email: 'ada@example.com',
      name: 'Ada',
      role: 'developer',
    });
  });

  it.each([
    [undefined, 'user'],
    ['viewer', 'viewer'],
    ['admin', 'admin'],
  ])('role claim %j → %s', (role, expected) => {
    expect(identityFromClaims({ sub: 's', exp, role }).role).toBe(expected);
  });

  it.each([['superuser'], ['ADMIN'], ['Admin'], [' admin'], [42], [null], [['admin']]])(
    'role claim %j → 401 invalid_token (an exact enum value or nothing)',
    (role) => {
      expect(() => identityFromClaims({ sub: 's', exp, role })).toThrow(/role claim must be one of/);
    },
  );

  it('drops a malformed email or an empty name instead of trusting it', () => {
    expect(identityFromClaims({ sub: 's', exp, email: 'not an email', name: '   ' })).toMatchObject({
      email: null,
      name: null,
    });
    expect(identityFromClaims({ sub: 's', exp, email: ['a@b.c'] }).email).toBeNull();
  });

  it.each([
    ['no exp', { sub: 's' }, 'exp claim is required'],
    ['string exp', { sub: 's', exp: 'tomorrow' }, 'exp claim is required'],
    ['no sub', { exp }, 'sub claim is required'],
    ['empty sub', { sub: ' ', exp }, 'sub claim is required'],
    ['numeric sub', { sub: 12, exp }, 'sub claim is required'],
    ['not an object', 'a string', 'Invalid token payload'],
    ['NUL in sub', { sub: 'a\u0000b', exp }, 'the sub claim contains a NUL character'],
    [
      'unpaired surrogate in sub',
      { sub: 'a\ud800', exp },
      'the sub claim contains an unpaired UTF-16 surrogate',
    ],
    ['NUL in email', { sub: 's', email: 'a\u0000@b.io', exp }, 'the email claim contains a NUL character'],
    ['NUL in name', { sub: 's', name: 'Eve\u0000', exp }, 'the name claim contains a NUL character'],
  ])('%s → 401', (_name, payload, message) => {
    const err = rejection(payload);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(401);
    expect(err.message).toContain(message);
    expect(err.headers['www-authenticate']).toBe('Bearer');
  });
});
