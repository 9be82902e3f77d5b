import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, newApiKey, signHs256 } from '../support/auth.js';
import { freePort, getJson, isolatedEnv, spawnGateway, type GatewayProcess } from '../support/gateway.js';

const JWT_SECRET = 'log-test-secret'.padEnd(40, '#');

/**
 * The real process (node dist/src/main.js) at LOG_LEVEL=debug with JSON logs, given credentials in
 * every place a client can put them: no log line may contain a raw key, a JWT or an Authorization
 * value — whether the request succeeds, fails authentication or fails validation.
 */
describe('no credential in any log line (real process, debug level, JSON logs)', () => {
  let gw: GatewayProcess;
  let cleanup: () => Promise<void>;
  const adminKey = newApiKey();
  const secrets: string[] = [adminKey];

  beforeAll(async () => {
    const isolated = await isolatedEnv('embedded', {
      PORT: String(await freePort()),
      LOG_LEVEL: 'debug',
      LOG_FORMAT: 'json',
      ADMIN_BOOTSTRAP_KEY: adminKey,
      JWT_SECRET,
    });
    cleanup = isolated.cleanup;
    gw = spawnGateway(isolated.env);
    await gw.waitForOutput(/floodgate started/);
  });
  afterAll(async () => {
    await gw?.stop();
    await cleanup?.();
  });

  it('sends keys and tokens every way, then finds none of them in the output', async () => {
    const url = gw.url;
    // A user and key created through the API (the raw key travels in a response body).
    const user = await getJson(`${url}/api/admin/users`, {
      method: 'POST',
      headers: bearer(adminKey),
      body: JSON.stringify({ email: 'logs@example.com', role: 'developer' }),
    });
    expect(user.status).toBe(201);
    const created = await getJson(`${url}/api/admin/users/${user.body.id}/keys`, {
      method: 'POST',
      headers: bearer(adminKey),
      body: JSON.stringify({ name: 'logged?' }),
    });
    expect(created.status).toBe(201);
    const userKey: string = created.body.key;
    const ownKey = await getJson(`${url}/api/keys`, {
      method: 'POST',
      headers: { 'x-api-key': userKey, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'own' }),
    });
    expect(ownKey.status).toBe(201);
    const token = signHs256(JWT_SECRET, { sub: 'idp|logs', email: 'jwt@example.com' });
    const badToken = signHs256('not-the-secret'.padEnd(40, '-'), { sub: 'idp|logs' });
    const unknownKey = newApiKey();
    secrets.push(userKey, ownKey.body.key, token, badToken, unknownKey);

    const calls: [string, RequestInit, number][] = [
      ['/api/me', { headers: bearer(adminKey, false) }, 200],
      ['/api/me', { headers: { 'x-api-key': userKey } }, 200],
      ['/api/me', { headers: bearer(token, false) }, 200],
      ['/api/me', { headers: bearer(badToken, false) }, 401],
      ['/api/me', { headers: bearer(unknownKey, false) }, 401],
      ['/api/me', { headers: { 'x-api-key': unknownKey } }, 401],
      [
        '/api/me',
        { headers: { authorization: `Basic ${Buffer.from(`u:${unknownKey}`).toString('base64')}` } },
        401,
      ],
      ['/api/admin/users', { headers: { 'x-api-key': userKey } }, 403],
      // A raw key in body fields: refused by validation, named (never echoed) in the error.
      [
        '/api/keys',
        {
          method: 'POST',
          headers: { 'x-api-key': userKey, 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'x', key: unknownKey }),
        },
        400,
      ],
      [
        '/api/keys',
        {
          method: 'POST',
          headers: bearer(adminKey),
          body: JSON.stringify({ name: 'x', limits: { key: userKey, token } }),
        },
        400,
      ],
      [
        '/api/admin/users',
        {
          method: 'POST',
          headers: bearer(adminKey),
          body: JSON.stringify({ email: 'x@example.com', role: 'user', api_key: userKey }),
        },
        400,
      ],
      // A route that does not exist (no guard runs: Fastify answers 404 itself).
      ['/nope', { headers: { 'x-api-key': userKey } }, 404],
      ['/health/ready', { headers: bearer(adminKey, false) }, 200],
    ];
    for (const [path, init, status] of calls) {
      const r = await getJson(`${url}${path}`, init);
      expect(r.status, `${path} ${JSON.stringify(r.body)}`).toBe(status);
      for (const s of secrets) expect(JSON.stringify(r.body)).not.toContain(s);
    }
    await new Promise((r) => setTimeout(r, 300));
    const output = gw.output();
    const lines = output.split('\n').filter(Boolean);
    // Logging was really on: JSON lines, request lines for the calls above, at debug level.
    expect(lines.length).toBeGreaterThan(10);
    expect(output).toMatch(/"msg":"GET \/api\/me 200/);
    expect(output).toMatch(/"msg":"GET \/api\/me 401/);
    expect(output).toMatch(/"msg":"POST \/api\/keys 400/);
    for (const secret of secrets) {
      const offending = lines.filter((l) => l.includes(secret) || l.includes(secret.slice(3)));
      expect(offending, `a log line holds a credential`).toEqual([]);
      for (const part of secret.split('.').filter((p) => p.length > 16)) expect(output).not.toContain(part);
    }
    expect(output).not.toMatch(/Bearer fg_|Bearer ey/);
    expect(output.toLowerCase()).not.toContain('"authorization":"bearer');
  });
});
