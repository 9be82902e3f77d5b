import { createHmac, generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, newApiKey } from '../support/auth.js';
import { getJson, MODES, startGateway, type TestGateway } from '../support/gateway.js';

const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const now = (): number => Math.floor(Date.now() / 1000);

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaPublicPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const HS_SECRET = 'test-secret-'.padEnd(40, 'x');
const ISSUER = 'https://idp.test';

interface Flavour {
  name: string;
  env: Record<string, string>;
  /** Signs with the gateway's key and algorithm. */
  sign(payload: object): string;
  /** Signs with a key the gateway does not trust (same algorithm). */
  signWrongKey(payload: object): string;
}

const FLAVOURS: Flavour[] = [
  {
    name: 'HS256 (JWT_SECRET)',
    env: { JWT_SECRET: HS_SECRET, JWT_ISSUER: ISSUER },
    sign: (p) => jwt.sign(p, HS_SECRET, { algorithm: 'HS256' }),
    signWrongKey: (p) => jwt.sign(p, 'another-secret'.padEnd(40, 'y'), { algorithm: 'HS256' }),
  },
  {
    name: 'RS256 (JWT_PUBLIC_KEY)',
    env: { JWT_PUBLIC_KEY: rsaPublicPem, JWT_ISSUER: ISSUER },
    sign: (p) => jwt.sign(p, rsa.privateKey, { algorithm: 'RS256' }),
    signWrongKey: (p) => jwt.sign(p, otherRsa.privateKey, { algorithm: 'RS256' }),
  },
];

const claims = (extra: object = {}): Record<string, unknown> => ({
  sub: 'idp|alice',
  aud: 'floodgate',
  iss: ISSUER,
  exp: now() + 300,
  ...extra,
});

function withoutClaim(name: string): Record<string, unknown> {
  const c = claims();
  delete c[name];
  return c;
}

/** HS256 over header.payload with the given secret, done by hand (no library refuses anything). */
function hs256By(secret: string, payload: object): string {
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

function tamper(token: string): string {
  const [h, , s] = token.split('.');
  return `${h}.${b64(claims({ role: 'admin', sub: 'idp|mallory' }))}.${s}`;
}

/** [case, authorization header value or null (absent), expected message (substring)] */
function matrix(f: Flavour): [string, string | null, string][] {
  return [
    ['missing header', null, 'Authorization header is missing'],
    ['empty header', '', 'Authorization header is missing'],
    ['not Bearer', `Basic ${Buffer.from('a:b').toString('base64')}`, 'Bearer'],
    ['Bearer without a token', 'Bearer ', 'Bearer'],
    ['malformed token', 'Bearer not-a-jwt', 'Malformed token'],
    ['three garbage segments', 'Bearer aaa.bbb.ccc', 'token'],
    ['alg none', `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`, 'alg none'],
    [
      'HS256 signed with the RS public key',
      `Bearer ${hs256By(rsaPublicPem, claims())}`,
      f.name.startsWith('RS') ? 'algorithm' : 'signature',
    ],
    ['expired', `Bearer ${f.sign(claims({ exp: now() - 60 }))}`, 'Token has expired'],
    ['no exp', `Bearer ${f.sign(withoutClaim('exp'))}`, 'exp'],
    ['wrong aud', `Bearer ${f.sign(claims({ aud: 'someone-else' }))}`, 'Invalid token audience'],
    ['no aud', `Bearer ${f.sign(withoutClaim('aud'))}`, 'Invalid token audience'],
    ['wrong iss', `Bearer ${f.sign(claims({ iss: 'https://evil.test' }))}`, 'Invalid token issuer'],
    ['no sub', `Bearer ${f.sign(withoutClaim('sub'))}`, 'sub'],
    ['tampered payload', `Bearer ${tamper(f.sign(claims()))}`, 'Invalid token signature'],
    ['wrong key', `Bearer ${f.signWrongKey(claims())}`, 'Invalid token signature'],
    ['oversized token', `Bearer ${'a'.repeat(9000)}`, 'token'],
    ['malformed fg_ key', 'Bearer fg_short', 'Invalid API key'],
    ['unknown fg_ key', `Bearer ${newApiKey()}`, 'Invalid API key'],
  ];
}

for (const flavour of FLAVOURS) {
  describe.each(MODES)(`JWT ${flavour.name} (%s mode)`, (mode) => {
    let gw: TestGateway;
    const adminKey = newApiKey();
    beforeAll(async () => {
      gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey, ...flavour.env });
    });
    afterAll(async () => {
      await gw?.close();
    });

    it.each(matrix(flavour))(
      '%s → 401 with a fixed message, never 5xx, token not echoed',
      async (_name, authorization, message) => {
        const headers: Record<string, string> = authorization === null ? {} : { authorization };
        const r = await getJson(`${gw.url}/api/me`, { headers });
        expect(r.status).toBe(401);
        expect(r.headers.get('www-authenticate')).toBe('Bearer');
        expect(r.body.error).toMatchObject({
          type: 'authentication_error',
          param: null,
          request_id: r.headers.get('x-request-id'),
        });
        expect(r.body.error.message).toContain(message);
        const token = authorization?.split(' ')[1];
        if (token && token.length > 8) {
          expect(JSON.stringify(r.body)).not.toContain(token);
          for (const part of token.split('.').filter((s) => s.length > 8))
            expect(JSON.stringify(r.body)).not.toContain(part);
        }
      },
    );

    it('the matrix also holds on an admin route (401, not 403 or 5xx)', async () => {
      for (const [, authorization] of matrix(flavour)) {
        const r = await getJson(`${gw.url}/api/admin/users`, {
          headers: authorization === null ? {} : { authorization },
        });
        expect(r.status).toBe(401);
      }
    });

    it('a valid token for an unknown sub provisions the user from its claims, once', async () => {
      const sub = `idp|${mode}-ada`;
      const token = flavour.sign(claims({ sub, email: 'Ada@Example.com', name: 'Ada L', role: 'developer' }));
      const first = await getJson(`${gw.url}/api/me`, { headers: bearer(token) });
      expect(first.status).toBe(200);
      expect(first.body).toMatchObject({
        email: 'ada@example.com',
        name: 'Ada L',
        role: 'developer',
        method: 'jwt',
        api_key: null,
      });
      const again = await getJson(`${gw.url}/api/me`, { headers: bearer(token) });
      const parallel = await getJson(`${gw.url}/api/me`, {
        headers: bearer(flavour.sign(claims({ sub, role: 'admin' }))),
      });
      expect(again.body.id).toBe(first.body.id);
      // The role claim matters only at provisioning: the users table is authoritative afterwards.
      expect(parallel.body).toMatchObject({ id: first.body.id, role: 'developer' });
      const rows = (await gw.app
        .get(DataSource)
        .query(`SELECT email, name, role FROM users WHERE jwt_subject = $1`, [sub])) as unknown[];
      expect(rows).toEqual([{ email: 'ada@example.com', name: 'Ada L', role: 'developer' }]);
      const audit = await getJson(`${gw.url}/api/admin/audit?action=user.provision`, {
        headers: bearer(adminKey),
      });
      expect(audit.body.data).toEqual([
        expect.objectContaining({ target_id: first.body.id, actor_id: first.body.id }),
      ]);
    });

    it('no role claim provisions a plain user (an unknown one is refused: credential-rules); concurrent first requests make one row', async () => {
      const sub = `idp|${mode}-bob`;
      const token = flavour.sign(claims({ sub }));
      const call = (): ReturnType<typeof getJson> => getJson(`${gw.url}/api/me`, { headers: bearer(token) });
      // Concurrent only against real Postgres: embedded PGlite mis-handles concurrent extended-protocol queries.
      const answers =
        mode === 'distributed'
          ? await Promise.all(Array.from({ length: 5 }, call))
          : [await call(), await call(), await call(), await call(), await call()];
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
      expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
      expect(answers[0]!.body).toMatchObject({ role: 'user', email: null });
      const count = (await gw.app
        .get(DataSource)
        .query(`SELECT count(*)::int AS n FROM users WHERE jwt_subject = $1`, [sub])) as { n: number }[];
      expect(count[0]!.n).toBe(1);
    });

    it('JWT users get their role: user → 403 on admin routes; admin claim → 200', async () => {
      const user = flavour.sign(claims({ sub: `idp|${mode}-carl`, role: 'user' }));
      expect((await getJson(`${gw.url}/api/admin/users`, { headers: bearer(user) })).status).toBe(403);
      const admin = flavour.sign(claims({ sub: `idp|${mode}-root`, role: 'admin' }));
      expect((await getJson(`${gw.url}/api/admin/users`, { headers: bearer(admin) })).status).toBe(200);
    });

    it('a disabled user → their JWT is 401 at once; enabled again → 200', async () => {
      const token = flavour.sign(claims({ sub: `idp|${mode}-dora`, email: `dora-${mode}@example.com` }));
      const me = await getJson(`${gw.url}/api/me`, { headers: bearer(token) });
      expect(me.status).toBe(200);
      const off = await getJson(`${gw.url}/api/admin/users/${me.body.id}`, {
        method: 'PATCH',
        headers: bearer(adminKey),
        body: JSON.stringify({ disabled: true }),
      });
      expect(off.status).toBe(200);
      const denied = await getJson(`${gw.url}/api/me`, { headers: bearer(token) });
      expect(denied.status).toBe(401);
      expect(denied.body.error.message).toBe('User is disabled');
      await getJson(`${gw.url}/api/admin/users/${me.body.id}`, {
        method: 'PATCH',
        headers: bearer(adminKey),
        body: JSON.stringify({ disabled: false }),
      });
      expect((await getJson(`${gw.url}/api/me`, { headers: bearer(token) })).status).toBe(200);
    });

    it('a token whose email belongs to another user does not take that account over', async () => {
      const token = flavour.sign(
        claims({ sub: `idp|${mode}-imposter`, email: 'admin@floodgate.local', role: 'admin' }),
      );
      const r = await getJson(`${gw.url}/api/me`, { headers: bearer(token) });
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe('jwt_subject_conflict');
    });
  });
}

describe('JWT not configured (API keys only)', () => {
  let gw: TestGateway;
  const adminKey = newApiKey();
  beforeAll(async () => {
    gw = await startGateway('embedded', { ADMIN_BOOTSTRAP_KEY: adminKey });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('a Bearer value that is not an fg_ key → 401 "JWT authentication is not configured"', async () => {
    const token = jwt.sign(claims(), 'whatever-secret', { algorithm: 'HS256' });
    const r = await getJson(`${gw.url}/api/me`, { headers: bearer(token) });
    expect(r.status).toBe(401);
    expect(r.body.error).toMatchObject({ type: 'authentication_error', code: 'jwt_not_configured' });
    expect(r.body.error.message).toContain('JWT authentication is not configured');
    expect(JSON.stringify(r.body)).not.toContain(token);
  });

  it('API keys work as Bearer and as x-api-key; x-api-key wins when both are sent', async () => {
    expect((await getJson(`${gw.url}/api/me`, { headers: bearer(adminKey) })).status).toBe(200);
    expect((await getJson(`${gw.url}/api/me`, { headers: { 'x-api-key': adminKey } })).status).toBe(200);
    expect(
      (
        await getJson(`${gw.url}/api/me`, {
          headers: { 'x-api-key': adminKey, authorization: 'Bearer junk' },
        })
      ).status,
    ).toBe(200);
    const r = await getJson(`${gw.url}/api/me`, {
      headers: { 'x-api-key': 'junk', authorization: `Bearer ${adminKey}` },
    });
    expect(r.status).toBe(401);
    expect(r.body.error.message).toBe('Invalid API key');
  });
});
