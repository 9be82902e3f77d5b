/**
 * JWT attack matrix, for a gateway verifying RS256 (JWT_PUBLIC_KEY) and one verifying HS256
 * (JWT_SECRET). test/auth/jwt.e2e-spec.ts covers the basic refusals (alg none, expired, aud/iss, …)
 * on /api/me; this file adds the header-injection family (kid, jku, x5u, jwk, x5c, crit), nbf,
 * non-JSON and non-object segments, type confusion in claims, several alg-confusion shapes, and runs
 * every case against a route of each family (identity, admin, relay) with a sentinel that must never
 * be contacted (jku / x5u fetches).
 */
import { createHmac, generateKeyPairSync, randomBytes, sign as cryptoSign } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, newApiKey } from '../support/auth.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { call, Sentinel } from './helpers.js';

const b64 = (v: unknown): string =>
  Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const now = (): number => Math.floor(Date.now() / 1000);

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaPublicPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 });
const attackerJwk = attacker.publicKey.export({ format: 'jwk' });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const HS_SECRET = `hs-${randomBytes(24).toString('hex')}`;
const ISSUER = 'https://idp.security.test';

/**
 * Signs exactly the given header and payload (jsonwebtoken's sign() refuses malformed claims such as
 * a string `exp`, which is precisely what an attacker sends).
 */
function rawSigned(header: unknown, payload: unknown, signer: (data: Buffer) => Buffer): string {
  const head = `${b64(header)}.${b64(payload)}`;
  return `${head}.${signer(Buffer.from(head)).toString('base64url')}`;
}

interface Flavour {
  name: string;
  env: Record<string, string>;
  alg: 'HS256' | 'RS256';
  /** Signs header+payload with the gateway's real key (header fields merged over {alg, typ}). */
  sign(payload: object, header?: Record<string, unknown>): string;
}

const FLAVOURS: Flavour[] = [
  {
    name: 'RS256 (JWT_PUBLIC_KEY)',
    alg: 'RS256',
    env: { JWT_PUBLIC_KEY: rsaPublicPem, JWT_ISSUER: ISSUER },
    sign: (p, header = {}) =>
      rawSigned({ alg: 'RS256', typ: 'JWT', ...header }, p, (data) =>
        cryptoSign('sha256', data, rsa.privateKey),
      ),
  },
  {
    name: 'HS256 (JWT_SECRET)',
    alg: 'HS256',
    env: { JWT_SECRET: HS_SECRET, JWT_ISSUER: ISSUER },
    sign: (p, header = {}) =>
      rawSigned({ alg: 'HS256', typ: 'JWT', ...header }, p, (data) =>
        createHmac('sha256', HS_SECRET).update(data).digest(),
      ),
  },
];

const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  sub: `idp|attack-${randomBytes(4).toString('hex')}`,
  aud: 'floodgate',
  iss: ISSUER,
  role: 'admin',
  exp: now() + 300,
  ...extra,
});

function without(name: string): Record<string, unknown> {
  const c = claims();
  delete c[name];
  return c;
}

/** HS-family signature over arbitrary header/payload text (no library in the way). */
function hmacToken(header: unknown, payload: unknown, secret: string | Buffer, hash = 'sha256'): string {
  const head = `${b64(header)}.${b64(payload)}`;
  return `${head}.${createHmac(hash, secret).update(head).digest('base64url')}`;
}

/** [case, bearer value] — every one must be a 401. */
function attacks(f: Flavour, sentinelUrl: string): [string, string][] {
  const valid = f.sign(claims());
  const [vh, vp, vs] = valid.split('.') as [string, string, string];
  return [
    // --- algorithm games ---
    ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`],
    ['alg None (case)', `${b64({ alg: 'None', typ: 'JWT' })}.${b64(claims())}.`],
    ['alg NONE with the original signature', `${b64({ alg: 'NONE' })}.${vp}.${vs}`],
    ['alg none, signature kept', `${b64({ alg: 'none' })}.${b64(claims())}.${vs}`],
    ['alg missing', `${b64({ typ: 'JWT' })}.${b64(claims())}.${vs}`],
    [
      'HS256 signed with the RS public key (PEM)',
      hmacToken({ alg: 'HS256', typ: 'JWT' }, claims(), rsaPublicPem),
    ],
    [
      'HS256 signed with the RS public key (DER)',
      hmacToken(
        { alg: 'HS256', typ: 'JWT' },
        claims(),
        rsa.publicKey.export({ type: 'spki', format: 'der' }),
      ),
    ],
    ['HS512 signed with the RS public key', hmacToken({ alg: 'HS512' }, claims(), rsaPublicPem, 'sha512')],
    [
      'HS384 with the real secret (alg not in JWT_ALGORITHMS)',
      hmacToken({ alg: 'HS384' }, claims(), HS_SECRET, 'sha384'),
    ],
    ['HS256 with an empty secret', hmacToken({ alg: 'HS256' }, claims(), '')],
    ['RS512 by the attacker', jwt.sign(claims(), attacker.privateKey, { algorithm: 'RS512' })],
    ['PS256 by the attacker', jwt.sign(claims(), attacker.privateKey, { algorithm: 'PS256' })],
    ['ES256 by the attacker', jwt.sign(claims(), ec.privateKey, { algorithm: 'ES256' })],
    // --- header injection: key material or key location chosen by the token ---
    [
      'embedded jwk (attacker key, attacker signature)',
      jwt.sign(claims(), attacker.privateKey, {
        algorithm: 'RS256',
        header: { alg: 'RS256', jwk: attackerJwk } as unknown as jwt.JwtHeader,
      }),
    ],
    [
      'jku pointing at a sentinel (attacker signature)',
      jwt.sign(claims(), attacker.privateKey, {
        algorithm: 'RS256',
        header: { alg: 'RS256', jku: `${sentinelUrl}/jwks.json`, kid: 'k1' } as jwt.JwtHeader,
      }),
    ],
    [
      'x5u pointing at a sentinel (attacker signature)',
      jwt.sign(claims(), attacker.privateKey, {
        algorithm: 'RS256',
        header: { alg: 'RS256', x5u: `${sentinelUrl}/cert.pem` } as unknown as jwt.JwtHeader,
      }),
    ],
    [
      'x5c with an attacker chain',
      jwt.sign(claims(), attacker.privateKey, {
        algorithm: 'RS256',
        header: {
          alg: 'RS256',
          x5c: [attacker.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')],
        } as jwt.JwtHeader,
      }),
    ],
    [
      'kid path traversal + empty HMAC key',
      hmacToken({ alg: 'HS256', kid: '../../../../dev/null' }, claims(), ''),
    ],
    [
      'kid SQL injection + HMAC "x"',
      hmacToken({ alg: 'HS256', kid: "x' UNION SELECT 'x' --" }, claims(), 'x'),
    ],
    // --- time claims ---
    ['expired', f.sign(claims({ exp: now() - 60 }))],
    ['expired beyond the 5 s skew', f.sign(claims({ exp: now() - 30 }))],
    ['nbf in the future', f.sign(claims({ nbf: now() + 600 }))],
    ['no exp', f.sign(without('exp'))],
    ['exp as a string', f.sign(claims({ exp: String(now() + 300) }))],
    ['exp as an object', f.sign(claims({ exp: { $gt: 0 } }))],
    // JSON has no Infinity: 1e400 parses to Infinity in JavaScript.
    [
      'exp 1e400 (Infinity)',
      hmacToken({ alg: 'HS256' }, `${JSON.stringify(claims()).slice(0, -1)},"exp":1e400}`, HS_SECRET),
    ],
    // --- audience / issuer / subject ---
    ['wrong aud', f.sign(claims({ aud: 'not-floodgate' }))],
    ['no aud', f.sign(without('aud'))],
    ['wrong iss', f.sign(claims({ iss: 'https://evil.test' }))],
    ['no iss (issuer configured)', f.sign(without('iss'))],
    ['no sub', f.sign(without('sub'))],
    ['empty sub', f.sign(claims({ sub: '   ' }))],
    ['sub as an object', f.sign(claims({ sub: { id: 'x' } }))],
    ['sub too long', f.sign(claims({ sub: 's'.repeat(300) }))],
    // --- integrity ---
    ['tampered payload (role → admin, other sub)', `${vh}.${b64(claims({ sub: 'idp|mallory' }))}.${vs}`],
    ['tampered header', `${b64({ alg: f.alg, typ: 'JWT', kid: 'x' })}.${vp}.${vs}`],
    ['signature stripped', `${vh}.${vp}.`],
    ['signature of another token', `${vh}.${vp}.${f.sign(claims()).split('.')[2]}`],
    ['signature bit-flipped', `${vh}.${vp}.${vs.slice(0, -2)}${vs.endsWith('AA') ? 'BB' : 'AA'}`],
    // --- shape ---
    [
      'oversized token (12 KB, under the header limit)',
      `${vh}.${b64({ ...claims(), pad: 'x'.repeat(9_000) })}.${vs}`,
    ],
    ['two segments', `${vh}.${vp}`],
    ['four segments', `${vh}.${vp}.${vs}.${vs}`],
    ['header not JSON', `${b64('{not json')}.${vp}.${vs}`],
    ['payload not JSON', `${vh}.${b64('not json at all')}.${vs}`],
    ['payload a JSON string (signed)', hmacToken({ alg: 'HS256' }, '"just a string"', HS_SECRET)],
    ['payload a JSON array (signed)', hmacToken({ alg: 'HS256' }, [1, 2, 3], HS_SECRET)],
    ['payload null (signed)', hmacToken({ alg: 'HS256' }, null, HS_SECRET)],
    ['header a JSON array', `${b64([f.alg])}.${vp}.${vs}`],
    ['non-base64 characters', `${vh}!!.${vp}.${vs}`],
    ['whitespace inside', `${vh}. ${vp}.${vs}`],
    ['unicode', `${vh}.${vp}.${vs}\u00e9`],
  ];
}

for (const f of FLAVOURS) {
  describe(`security: JWT attack matrix, ${f.name}`, () => {
    let gw: TestGateway;
    const sentinel = new Sentinel();
    const adminKey = newApiKey();
    let cases: [string, string][] = [];

    beforeAll(async () => {
      await sentinel.start();
      // A relay route needs a provider only for the accepted control case; 401s never get that far.
      gw = await startGateway('embedded', { ADMIN_BOOTSTRAP_KEY: adminKey, ...f.env });
      cases = attacks(f, `http://127.0.0.1:${sentinel.port}`);
    });
    afterAll(async () => {
      await gw?.close();
      await sentinel.close();
    });

    it('control: a token signed with the real key is accepted (so the 401s below mean something)', async () => {
      const r = await call(`${gw.url}/api/me`, { headers: bearer(f.sign(claims()), false) });
      expect(r.status, r.text).toBe(200);
      expect(r.body.method).toBe('jwt');
    });

    it('every attack → 401 authentication_error on identity, admin and relay routes; never 5xx; token never echoed', async () => {
      const problems: string[] = [];
      for (const [name, token] of cases) {
        for (const [method, path, body] of [
          ['GET', '/api/me', undefined],
          ['GET', '/api/admin/users', undefined],
          [
            'POST',
            '/v1/chat/completions',
            { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
          ],
        ] as const) {
          let r;
          try {
            r = await call(`${gw.url}${path}`, {
              method,
              headers: { authorization: `Bearer ${token}` },
              body,
            });
          } catch (err) {
            problems.push(`${name} ${path}: request failed (${(err as Error).message})`);
            continue;
          }
          if (r.status !== 401) {
            problems.push(`${name} ${path}: ${r.status} ${r.text.slice(0, 200)}`);
            continue;
          }
          if (
            r.body?.error?.type !== 'authentication_error' ||
            r.headers.get('www-authenticate') !== 'Bearer'
          )
            problems.push(`${name} ${path}: wrong error shape ${r.text.slice(0, 200)}`);
          const echoed = [r.text, ...[...r.headers.entries()].map(([k, v]) => `${k}: ${v}`)].join('\n');
          for (const part of token.split('.').filter((s) => s.length >= 12))
            if (echoed.includes(part)) problems.push(`${name} ${path}: token segment echoed`);
        }
      }
      expect(problems).toEqual([]);
      expect(sentinel.connections, 'jku/x5u must never be fetched').toBe(0);
    });

    it('a token above the HTTP header limit (64 KB) is refused before auth: 431, never 5xx, never echoed', async () => {
      const token = `${f.sign(claims())}${'A'.repeat(64_000)}`;
      const r = await call(`${gw.url}/api/me`, { headers: { authorization: `Bearer ${token}` } });
      expect(r.status).toBe(431);
      // Raised by Node's parser before any route runs, and still the one error shape with a request id.
      expect(JSON.parse(r.text).error).toMatchObject({
        type: 'invalid_request_error',
        code: 'headers_too_large',
      });
      expect(JSON.parse(r.text).error.request_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(r.text).not.toContain(token.slice(0, 40));
      expect(r.text).not.toContain('A'.repeat(64));
    });

    it('no attack provisioned a user (the users table only holds the bootstrap admin and the control user)', async () => {
      const users = await call(`${gw.url}/api/admin/users?limit=500`, { headers: bearer(adminKey, false) });
      expect(users.status).toBe(200);
      const subjects = users.body.data
        .map((u: { jwt_subject: string | null }) => u.jwt_subject)
        .filter(Boolean);
      expect(subjects.length).toBeLessThanOrEqual(1);
      expect(subjects).not.toContain('idp|mallory');
    });

    it('kid / jku / x5u / jwk headers on a token signed with the REAL key are ignored (accepted, nothing fetched)', async () => {
      const url = `http://127.0.0.1:${sentinel.port}`;
      for (const header of [
        { kid: '../../../../etc/passwd' },
        { kid: "' OR 1=1 --" },
        { jku: `${url}/jwks.json` },
        { x5u: `${url}/cert.pem` },
        { jwk: attackerJwk },
      ]) {
        const token = f.sign(claims({ sub: 'idp|header-ignored', role: 'user' }), header);
        const r = await call(`${gw.url}/api/me`, { headers: bearer(token, false) });
        expect(r.status, `${JSON.stringify(header).slice(0, 60)} → ${r.text}`).toBe(200);
        expect(r.body.role).toBe('user');
      }
      expect(sentinel.connections).toBe(0);
    });

    it('a JWT in x-api-key is not accepted as an API key or a token (401)', async () => {
      const r = await call(`${gw.url}/api/me`, { headers: { 'x-api-key': f.sign(claims()) } });
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe('invalid_api_key');
    });
  });
}
