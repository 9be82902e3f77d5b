import { generateKeyPairSync } from 'node:crypto';
import jsonwebtoken from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JwtStrategy } from '../../src/auth/jwt.strategy.js';
import { CredentialCache } from '../../src/auth/credential-cache.js';
import { CredentialVerifier } from '../../src/auth/credential-verifier.js';
import { createUserWithKey, newApiKey, signHs256 } from '../support/auth.js';
import { MODES, startGateway, type TestGateway } from '../support/gateway.js';

const JWT_SECRET = 'cost-secret'.padEnd(40, '=');

async function perOp(n: number, op: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(200, n); i++) await op(); // warm-up
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await op();
  return Number(process.hrtime.bigint() - started) / 1000 / n;
}

/**
 * The auth step's cost per request (docs/auth.md quotes these numbers): the verifier alone,
 * in process, as the global guard calls it. Printed, and bounded loosely so a regression (say, a
 * query on every cache hit) fails.
 */
describe.each(MODES)('auth step cost (%s mode)', (mode) => {
  let gw: TestGateway;
  let verifier: CredentialVerifier;
  let cache: CredentialCache;
  let key: string;
  let token: string;

  beforeAll(async () => {
    const adminKey = newApiKey();
    gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey, JWT_SECRET });
    verifier = gw.app.get(CredentialVerifier);
    cache = gw.app.get(CredentialCache);
    key = (await createUserWithKey(gw, adminKey, 'user')).key;
    token = signHs256(JWT_SECRET, { sub: 'idp|cost', exp: Math.floor(Date.now() / 1000) + 3600 });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('measures API key (cache hit and miss) and JWT verification', async () => {
    const byBearer = { headers: { authorization: `Bearer ${key}` } };
    const byHeader = { headers: { 'x-api-key': key } };
    const byJwt = { headers: { authorization: `Bearer ${token}` } };
    const hit = await perOp(20_000, () => verifier.authenticate(byBearer));
    const hitHeader = await perOp(20_000, () => verifier.authenticate(byHeader));
    const miss = await perOp(300, () => {
      cache.clear();
      return verifier.authenticate(byBearer);
    });
    const jwt = await perOp(5_000, () => verifier.authenticate(byJwt));
    const jwtMiss = await perOp(200, () => {
      cache.clear();
      return verifier.authenticate(byJwt);
    });
    // RS256 signature check alone (passport-jwt + jsonwebtoken), without the gateway around it.
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rs = new JwtStrategy({
      secret: undefined,
      publicKey: rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      algorithms: ['RS256'],
      audience: 'floodgate',
      issuer: undefined,
    });
    const rsToken = jsonwebtoken.sign(
      { sub: 'idp|rs', aud: 'floodgate', exp: Math.floor(Date.now() / 1000) + 3600 },
      rsa.privateKey,
      {
        algorithm: 'RS256',
      },
    );
    const rs256 = await perOp(2_000, () => rs.verify({}, rsToken));
    const line = (label: string, us: number): string =>
      `  ${label.padEnd(44)} ${us.toFixed(1).padStart(8)} µs`;
    console.log(
      [
        `auth step per request, ${mode} mode (${process.version}, ${process.arch}):`,
        line('API key, cache hit (Authorization: Bearer)', hit),
        line('API key, cache hit (x-api-key)', hitHeader),
        line('API key, cache miss (1 indexed query)', miss),
        line('JWT HS256, user cached', jwt),
        line('JWT HS256, user not cached (1 query)', jwtMiss),
        line('JWT RS256 (2048-bit) token check alone', rs256),
      ].join('\n'),
    );
    expect(hit).toBeLessThan(100);
    expect(hitHeader).toBeLessThan(100);
    expect(jwt).toBeLessThan(500);
    expect(miss).toBeGreaterThan(hit);
  });
});
