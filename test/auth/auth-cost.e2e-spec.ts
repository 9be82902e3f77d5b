import { generateKeyPairSync } from 'node:crypto';
import jsonwebtoken from 'jsonwebtoken';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JwtStrategy } from '../../src/auth/jwt.strategy.js';
import { CredentialCache } from '../../src/auth/credential-cache.js';
import { CredentialVerifier, KEY_LOOKUP_SQL } from '../../src/auth/credential-verifier.js';
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
 * in process, as the global guard calls it. The times are printed, not asserted (a loaded machine
 * moves them 2–10×; performance is bench/'s job). What is asserted is what would make a hit dear:
 * the database queries each path makes, counted at TypeORM's query logger (every query the
 * Postgres query runner sends passes it, in both modes) — a cache hit makes none, a miss one.
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
    // key lookups and user reads, counted as they are sent (background flushes write, never these)
    const counts = { keyLookups: 0, userReads: 0 };
    const logger = gw.app.get(DataSource).logger;
    const logQuery = logger.logQuery.bind(logger);
    logger.logQuery = (query, parameters, runner) => {
      if (query === KEY_LOOKUP_SQL) counts.keyLookups++;
      else if (/^SELECT\b[\s\S]*\bFROM "users"/.test(query)) counts.userReads++;
      return logQuery(query, parameters, runner);
    };
    const counted = async (
      op: () => Promise<number>,
    ): Promise<{ us: number; keyLookups: number; userReads: number }> => {
      const before = { ...counts };
      const us = await op();
      return {
        us,
        keyLookups: counts.keyLookups - before.keyLookups,
        userReads: counts.userReads - before.userReads,
      };
    };
    const byBearer = { headers: { authorization: `Bearer ${key}` } };
    const byHeader = { headers: { 'x-api-key': key } };
    const byJwt = { headers: { authorization: `Bearer ${token}` } };
    await verifier.authenticate(byBearer); // cached from here on
    const hitRun = await counted(() => perOp(20_000, () => verifier.authenticate(byBearer)));
    const hitHeaderRun = await counted(() => perOp(20_000, () => verifier.authenticate(byHeader)));
    const missRun = await counted(() =>
      perOp(300, () => {
        cache.clear();
        return verifier.authenticate(byBearer);
      }),
    );
    await verifier.authenticate(byJwt);
    const jwtRun = await counted(() => perOp(5_000, () => verifier.authenticate(byJwt)));
    const jwtMissRun = await counted(() =>
      perOp(200, () => {
        cache.clear();
        return verifier.authenticate(byJwt);
      }),
    );
    const [hit, hitHeader, miss, jwt, jwtMiss] = [hitRun, hitHeaderRun, missRun, jwtRun, jwtMissRun].map(
      (r) => r.us,
    ) as [number, number, number, number, number];
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
    // a cache hit (either header, and a JWT whose user is cached) reads nothing; a miss reads once
    // per request (warm-up included: perOp runs min(200, n) more first)
    expect(hitRun).toMatchObject({ keyLookups: 0, userReads: 0 });
    expect(hitHeaderRun).toMatchObject({ keyLookups: 0, userReads: 0 });
    expect(jwtRun).toMatchObject({ keyLookups: 0, userReads: 0 });
    expect(missRun.keyLookups).toBe(300 + 200);
    expect(jwtMissRun.userReads).toBeGreaterThanOrEqual(200 + 200);
    expect(jwtMissRun.keyLookups).toBe(0);
  });
});
