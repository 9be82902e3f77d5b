import { generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { describe, expect, it } from 'vitest';
import type { AppConfig } from '../config/app-config.js';
import { JwtStrategy } from './jwt.strategy.js';

type JwtConfig = AppConfig['auth']['jwt'];
const base: JwtConfig = {
  secret: undefined,
  publicKey: undefined,
  algorithms: ['HS256'],
  audience: 'floodgate',
  issuer: undefined,
};
const now = (): number => Math.floor(Date.now() / 1000);

describe('JwtStrategy (passport-jwt)', () => {
  it('verifies a token and maps its claims', async () => {
    const strategy = new JwtStrategy({ ...base, secret: 'a'.repeat(32) });
    const token = jwt.sign({ sub: 'u1', aud: 'floodgate', exp: now() + 60, role: 'viewer' }, 'a'.repeat(32));
    await expect(strategy.verify({}, token)).resolves.toMatchObject({ subject: 'u1', role: 'viewer' });
  });

  it('two strategies in one process keep their own keys (no shared global passport registration)', async () => {
    const one = new JwtStrategy({ ...base, secret: '1'.repeat(32) });
    const two = new JwtStrategy({ ...base, secret: '2'.repeat(32) });
    const forOne = jwt.sign({ sub: 'x', aud: 'floodgate', exp: now() + 60 }, '1'.repeat(32));
    await expect(one.verify({}, forOne)).resolves.toMatchObject({ subject: 'x' });
    await expect(two.verify({}, forOne)).rejects.toMatchObject({
      status: 401,
      message: 'Invalid token signature',
    });
  });

  it('with an RS256 public key, refuses an HS256 token signed with that public key', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const strategy = new JwtStrategy({ ...base, publicKey: pem, algorithms: ['RS256'] });
    const good = jwt.sign({ sub: 'r', aud: 'floodgate', exp: now() + 60 }, privateKey, {
      algorithm: 'RS256',
    });
    await expect(strategy.verify({}, good)).resolves.toMatchObject({ subject: 'r' });
    const confused = jwt.sign({ sub: 'r', aud: 'floodgate', exp: now() + 60 }, pem, { algorithm: 'HS256' });
    await expect(strategy.verify({}, confused)).rejects.toMatchObject({
      status: 401,
      message: 'Invalid token algorithm',
    });
  });

  it('requires exp even though jsonwebtoken does not', async () => {
    const strategy = new JwtStrategy({ ...base, secret: 'a'.repeat(32) });
    const token = jwt.sign({ sub: 'u1', aud: 'floodgate' }, 'a'.repeat(32));
    await expect(strategy.verify({}, token)).rejects.toMatchObject({
      status: 401,
      message: expect.stringContaining('exp'),
    });
  });
});
