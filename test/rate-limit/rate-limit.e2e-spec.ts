import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../src/common/principal.js';
import { RateLimitService } from '../../src/rate-limit/rate-limit.service.js';
import { bearer, createUserWithKey, newApiKey, type UserWithKey } from '../support/auth.js';
import { getJson, MODES, startGateway, type TestGateway } from '../support/gateway.js';

/**
 * The limiter in the real application, both modes. The gateway trusts 127.0.0.1 as a proxy, so a
 * test picks its client IP with X-Forwarded-For (each test its own address); requests from
 * 127.0.0.2 come from an untrusted peer. The IP policy is a token bucket (12/min: a token every
 * 5 s, burst 20) so an honest Retry-After is short enough to wait for. Decisions may wait 2 s for
 * Redis here: these tests are about limits, not about a loaded test machine's Redis latency (the
 * 100 ms failure path is tested in distributed.e2e-spec.ts).
 */

const IP_BURST = 20;

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** One HTTP request with full control: source address, X-Forwarded-For, credentials. */
function call(
  gw: TestGateway,
  path: string,
  opts: { key?: string; xff?: string; from?: string; method?: string; body?: unknown } = {},
): Promise<Res> {
  const url = new URL(path, gw.url);
  const headers: Record<string, string> = {};
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  if (opts.xff) headers['x-forwarded-for'] = opts.xff;
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  if (payload) headers['content-type'] = 'application/json';
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method: opts.method ?? 'GET',
        headers,
        localAddress: opts.from,
        agent: false,
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      },
    );
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

let ipCounter = 0;
/** A fresh client address per test (TEST-NET-2 range, never a real client). */
function freshIp(): string {
  ipCounter++;
  return `198.51.${100 + (ipCounter >> 8)}.${ipCounter & 255}`;
}

describe.each(MODES)('rate limiting in the gateway (%s mode)', (mode) => {
  let gw: TestGateway;
  const adminKey = newApiKey();
  let limited: UserWithKey; // key rpm 5
  let sibling: UserWithKey; // another key of another user, default rpm

  beforeAll(async () => {
    gw = await startGateway(mode, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      TRUSTED_PROXIES: '127.0.0.1',
      RATE_LIMIT_IP_ALGORITHM: 'token_bucket',
      RATE_LIMIT_IP_RPM: '12',
      RATE_LIMIT_IP_BURST: String(IP_BURST),
      RATE_LIMIT_TIMEOUT_MS: '2000',
    });
    limited = await createUserWithKey(gw, adminKey, 'user', { key: { limits: { rpm: 5 } } });
    sibling = await createUserWithKey(gw, adminKey, 'developer');
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('every limited response carries X-RateLimit-* for the tightest policy and the IETF headers', async () => {
    const ip = freshIp();
    const r = await call(gw, '/api/me', { key: sibling.key, xff: ip });
    expect(r.status).toBe(200);
    // key 60/min (59 left), user 600/min, ip bucket 20 (19 left, next token in 5 s): the IP bucket is the tightest
    expect(r.headers['x-ratelimit-limit']).toBe(String(IP_BURST));
    expect(r.headers['x-ratelimit-remaining']).toBe(String(IP_BURST - 1));
    expect(Number(r.headers['x-ratelimit-reset'])).toBe(5);
    expect(r.headers['ratelimit-policy']).toBe(
      `"key";q=60;w=60, "user";q=600;w=60, "ip";q=12;w=60;burst=${IP_BURST}`,
    );
    expect(r.headers.ratelimit).toBe(`"key";r=59;t=60, "user";r=599;t=60, "ip";r=${IP_BURST - 1};t=5`);
    expect(r.headers['retry-after']).toBeUndefined();
    // exempt: health and docs carry none
    const health = await call(gw, '/health/live', { xff: ip });
    expect(health.status).toBe(200);
    expect(health.headers['x-ratelimit-limit']).toBeUndefined();
  });

  it("a key's own rpm applies: 5 admitted, then 429 with the error shape, the policy name and an honest Retry-After", async () => {
    const ip = freshIp();
    const ok = [];
    for (let i = 0; i < 5; i++) ok.push(await call(gw, '/api/me', { key: limited.key, xff: ip }));
    expect(ok.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(ok.map((r) => r.headers['x-ratelimit-remaining'])).toEqual(['4', '3', '2', '1', '0']);
    const refused = await call(gw, '/api/me', { key: limited.key, xff: ip });
    expect(refused.status).toBe(429);
    expect(refused.body).toEqual({
      error: {
        type: 'rate_limit_error',
        code: 'rate_limit_exceeded',
        message: expect.stringMatching(
          /^Rate limit exceeded for policy "key" \(5 requests per 60 s\); retry in \d+ s$/,
        ),
        param: 'key',
        request_id: refused.headers['x-request-id'],
      },
    });
    const retryAfter = Number(refused.headers['retry-after']);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(59);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(refused.headers['x-ratelimit-limit']).toBe('5');
    expect(refused.headers['x-ratelimit-remaining']).toBe('0');
    // retrying while limited consumes nothing (the admin view still counts exactly 5)
    for (let i = 0; i < 5; i++)
      expect((await call(gw, '/api/me', { key: limited.key, xff: ip })).status).toBe(429);
    const state = await getJson(`${gw.url}/api/admin/rate-limits/key:${limited.keyId}`, {
      headers: bearer(adminKey),
    });
    expect(state.body.policies[0]).toMatchObject({ name: 'key', limit: 5, current: 5, remaining: 0 });
    // identity is the key id: another key is unaffected
    expect((await call(gw, '/api/me', { key: sibling.key, xff: ip })).status).toBe(200);
  });

  it('counts requests refused by authentication against the IP; over the limit they get 429, and a retry after Retry-After is admitted', async () => {
    const ip = freshIp();
    const bad = newApiKey();
    const attempts = [];
    for (let i = 0; i < IP_BURST; i++) attempts.push(await call(gw, '/api/me', { key: bad, xff: ip }));
    expect(attempts.every((r) => r.status === 401)).toBe(true);
    expect(attempts[IP_BURST - 1]!.headers['x-ratelimit-remaining']).toBe('0');
    const refused = await call(gw, '/api/me', { key: bad, xff: ip });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({
      type: 'rate_limit_error',
      code: 'rate_limit_exceeded',
      param: 'ip',
    });
    expect(refused.headers['www-authenticate']).toBeUndefined();
    // the same IP with valid credentials is limited too (one IP budget)
    const valid = await call(gw, '/api/me', { key: sibling.key, xff: ip });
    expect(valid.status).toBe(429);
    const retryAfter = Number(valid.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(5);
    await new Promise((r) => setTimeout(r, retryAfter * 1000));
    const again = await call(gw, '/api/me', { key: sibling.key, xff: ip });
    expect(again.status).toBe(200);
  });

  it('a spoofed X-Forwarded-For from an untrusted peer changes nothing', async () => {
    // 127.0.0.2 is not in TRUSTED_PROXIES: every request counts against 127.0.0.2, whatever it claims.
    const results = [];
    for (let i = 0; i < IP_BURST + 3; i++) {
      results.push(
        await call(gw, '/api/me', { key: newApiKey(), from: '127.0.0.2', xff: `203.0.113.${i + 1}` }),
      );
    }
    expect(results.slice(0, IP_BURST).every((r) => r.status === 401)).toBe(true);
    expect(results.slice(IP_BURST).map((r) => r.status)).toEqual([429, 429, 429]);
    const peer = await getJson(`${gw.url}/api/admin/rate-limits/ip:127.0.0.2`, { headers: bearer(adminKey) });
    expect(peer.body.policies[0]).toMatchObject({
      name: 'ip',
      algorithm: 'token_bucket',
      remaining: 0,
      current: IP_BURST,
    });
    const spoofed = await getJson(`${gw.url}/api/admin/rate-limits/ip:203.0.113.1`, {
      headers: bearer(adminKey),
    });
    expect(spoofed.body.policies[0]).toMatchObject({ name: 'ip', current: 0, remaining: IP_BURST });
  });

  it('admin API: GET shows every policy of a subject, DELETE resets it (204, audited); permissions and validation', async () => {
    const user = await createUserWithKey(gw, adminKey, 'user', { key: { limits: { rpm: 3, tpm: 1000 } } });
    const ip = freshIp();
    for (let i = 0; i < 3; i++)
      expect((await call(gw, '/api/me', { key: user.key, xff: ip })).status).toBe(200);
    expect((await call(gw, '/api/me', { key: user.key, xff: ip })).status).toBe(429);

    const got = await getJson(`${gw.url}/api/admin/rate-limits/key:${user.keyId}`, {
      headers: bearer(adminKey),
    });
    expect(got.status).toBe(200);
    expect(got.body.subject).toBe(`key:${user.keyId}`);
    expect(got.body.policies).toEqual([
      {
        name: 'key',
        algorithm: 'sliding_window',
        unit: 'requests',
        limit: 3,
        burst: 3,
        remaining: 0,
        reset_seconds: expect.any(Number),
        current: 3,
        window_seconds: 60,
      },
      {
        name: 'tpm',
        algorithm: 'sliding_window',
        unit: 'tokens',
        limit: 1000,
        burst: 1000,
        remaining: 1000,
        reset_seconds: 0,
        current: 0,
        window_seconds: 60,
      },
    ]);
    expect(got.body.policies[0].reset_seconds).toBeGreaterThanOrEqual(59);
    const userState = await getJson(`${gw.url}/api/admin/rate-limits/user:${user.user.id}`, {
      headers: bearer(adminKey),
    });
    expect(userState.body.policies).toEqual([
      expect.objectContaining({ name: 'user', limit: 600, current: 3, remaining: 597 }),
    ]);

    const del = await fetch(`${gw.url}/api/admin/rate-limits/key:${user.keyId}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(del.status).toBe(204);
    const after = await getJson(`${gw.url}/api/admin/rate-limits/key:${user.keyId}`, {
      headers: bearer(adminKey),
    });
    expect(after.body.policies[0]).toMatchObject({ current: 0, remaining: 3 });
    expect((await call(gw, '/api/me', { key: user.key, xff: ip })).status).toBe(200);
    const audit = await getJson(`${gw.url}/api/admin/audit?action=rate_limit.reset`, {
      headers: bearer(adminKey),
    });
    expect(JSON.stringify(audit.body)).toContain(`key:${user.keyId}`);

    // a non-admin may not read or reset; malformed subject → 400; unknown key → 404
    expect(
      (await getJson(`${gw.url}/api/admin/rate-limits/key:${user.keyId}`, { headers: user.headers })).status,
    ).toBe(403);
    expect(
      (
        await fetch(`${gw.url}/api/admin/rate-limits/key:${user.keyId}`, {
          method: 'DELETE',
          headers: { authorization: `Bearer ${user.key}` },
        })
      ).status,
    ).toBe(403);
    const bad = await getJson(`${gw.url}/api/admin/rate-limits/key:fg_abc`, { headers: bearer(adminKey) });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'invalid_subject', param: 'subject' });
    expect(bad.headers.get('x-ratelimit-limit')).toBeTruthy(); // errors after the guard keep the headers
    const missing = await getJson(
      `${gw.url}/api/admin/rate-limits/key:00000000-0000-4000-8000-000000000000`,
      { headers: bearer(adminKey) },
    );
    expect(missing.status).toBe(404);
  });

  it('TPM: after the Relay charges the usage, the key is refused up front with policy "tpm"', async () => {
    const user = await createUserWithKey(gw, adminKey, 'user', { key: { limits: { tpm: 500 } } });
    const ip = freshIp();
    const me = await call(gw, '/api/me', { key: user.key, xff: ip });
    expect(me.status).toBe(200);
    const limiter = gw.app.get(RateLimitService);
    const principal = {
      userId: user.user.id,
      apiKeyId: user.keyId,
      apiKey: { rpm: null, tpm: 500 },
    } as Principal;
    await limiter.chargeTokens(principal, 300);
    expect((await call(gw, '/api/me', { key: user.key, xff: ip })).status).toBe(200);
    await limiter.chargeTokens(principal, 250);
    const refused = await call(gw, '/api/me', { key: user.key, xff: ip });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: 'rate_limit_exceeded', param: 'tpm' });
    expect(refused.body.error.message).toContain('500 tokens per 60 s');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(59);
    const state = await getJson(`${gw.url}/api/admin/rate-limits/key:${user.keyId}`, {
      headers: bearer(adminKey),
    });
    expect(state.body.policies[1]).toMatchObject({ name: 'tpm', current: 550, remaining: 0 });
    const stats = limiter.stats();
    expect(stats.tokensCharged).toBeGreaterThanOrEqual(550);
    expect(stats.decisions.tpm!.limited).toBeGreaterThanOrEqual(1);
    expect(stats.decisions.key!.allowed).toBeGreaterThan(0);
  });

  it('documents the admin routes in OpenAPI', async () => {
    const doc = await getJson(`${gw.url}/docs-json`);
    const path = doc.body.paths['/api/admin/rate-limits/{subject}'];
    expect(path.get.responses['200']).toBeDefined();
    expect(path.delete.responses['204']).toBeDefined();
    expect(path.get.summary).toBeTruthy();
    expect(doc.body.components.schemas.RateLimitSubjectDto).toBeDefined();
  });
});
