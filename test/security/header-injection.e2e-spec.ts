/**
 * Header injection and header hygiene, over real sockets (raw bytes where fetch would refuse to send
 * them), with the fake provider recording exactly what reaches the upstream:
 *  - CRLF / control / obs-text in X-Request-Id, X-Priority, model names → no response splitting,
 *    sane header lines, 400 where appropriate;
 *  - Host / X-Forwarded-* / absolute-form / X-Original-URL / method-override games change nothing;
 *  - the client's Authorization, x-api-key, cookies and proxy credentials never reach the upstream
 *    (it sees only the upstream key), for every relay endpoint, streaming or not;
 *  - upstream set-cookie / authorization / www-authenticate / x-ratelimit-* never reach the client,
 *    nor can the upstream overwrite the gateway's own headers or redirect the client.
 * Header handling is mode-independent: embedded mode only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey, type UserWithKey } from '../support/auth.js';
import type { RecordedRequest } from '../support/fake-provider.js';
import { startRelay, type RelayFixture } from '../support/relay.js';
import { call, NO_CLIENT_LIMITS, rawHttp, Sentinel, type RawResponse } from './helpers.js';

const UPSTREAM_KEY = 'sk-upstream-hdr-0123456789';
const SANE_HEADER_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+: ?[\t\x20-\x7e]*$/;
const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

function expectSane(r: RawResponse, label: string): void {
  expect(r.statusLine, label).toMatch(/^HTTP\/1\.1 \d{3} [\x20-\x7e]*$/);
  for (const line of r.headerLines) expect(line, `${label}: header line`).toMatch(SANE_HEADER_LINE);
  for (const name of ['set-cookie', 'x-injected', 'injected'])
    expect(r.headers.has(name), `${label}: ${name}`).toBe(false);
  expect(r.status, label).toBeLessThan(500);
}

describe('security: header injection and upstream header hygiene', () => {
  let fx: RelayFixture;
  let port: number;
  let user: UserWithKey;
  const sentinel = new Sentinel();

  beforeAll(async () => {
    await sentinel.start();
    fx = await startRelay('embedded', {
      env: NO_CLIENT_LIMITS,
      provider: { models: ['gpt-4o-mini', 'text-embedding-3-small', 'wild/*'] },
      keys: [{ key: UPSTREAM_KEY }],
    });
    port = Number(new URL(fx.gw.url).port);
    user = await createUserWithKey(fx.gw, fx.adminKey, 'user');
  });
  afterAll(async () => {
    await fx?.close();
    await sentinel.close();
  });

  const rawRequest = (lines: string[], body = ''): string =>
    [
      ...lines,
      `Host: 127.0.0.1:${port}`,
      `Content-Length: ${Buffer.byteLength(body)}`,
      'Connection: close',
      '',
      body,
    ].join('\r\n');

  describe('request headers', () => {
    it('X-Request-Id: only sane values are echoed; CRLF, control, obs-text, long values get a fresh id', async () => {
      const cases: [string, string | Buffer, boolean][] = [
        ['sane', 'req-123.abc:def_X', true],
        ['percent-encoded CRLF', 'abc%0d%0aSet-Cookie:%20x=1', false],
        ['space + header', 'abc Set-Cookie: x=1', false],
        ['html', '<script>alert(1)</script>', false],
        ['200 characters', 'a'.repeat(200), false],
        ['obs-text', Buffer.from([0x61, 0xff, 0xfe, 0x62]), false],
        ['tab', 'a\tb', false],
      ];
      for (const [label, value, echoed] of cases) {
        const head = Buffer.concat([
          Buffer.from(`GET /api/me HTTP/1.1\r\nAuthorization: Bearer ${user.key}\r\nX-Request-Id: `),
          Buffer.isBuffer(value) ? value : Buffer.from(value, 'latin1'),
          Buffer.from(`\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`),
        ]);
        const r = await rawHttp(port, head);
        expectSane(r, label);
        expect(r.status, label).toBe(200);
        const id = r.headers.get('x-request-id')?.[0];
        if (echoed) expect(id).toBe(value);
        else expect(id, label).toMatch(/^[0-9a-f-]{36}$/);
      }
    });

    it('raw CR / LF / NUL inside a header value is refused by the parser (400), never reflected', async () => {
      for (const bad of ['abc\rSet-Cookie: x=1', 'abc\x00def', 'abc\nSet-Cookie: x=1']) {
        const r = await rawHttp(
          port,
          `GET /api/me HTTP/1.1\r\nAuthorization: Bearer ${user.key}\r\nX-Request-Id: ${bad}\r\nHost: x\r\nConnection: close\r\n\r\n`,
        );
        expectSane(r, JSON.stringify(bad));
        // A bare LF is a line end for lenient parsers: then "Set-Cookie" is a *request* header, harmless.
        if (!bad.includes('\n')) expect(r.status).toBe(400);
        expect(r.raw).not.toMatch(/\r\nset-cookie:/i);
      }
      // A CRLF-split request header is just another request header: never echoed as a response header.
      const split = await rawHttp(
        port,
        rawRequest([
          `GET /api/me HTTP/1.1`,
          `Authorization: Bearer ${user.key}`,
          'X-Request-Id: abc',
          'Set-Cookie: x=1',
        ]),
      );
      expectSane(split, 'split');
      expect(split.headers.get('x-request-id')).toEqual(['abc']);
    });

    it('X-Priority: odd values → 400 invalid_priority with sane headers; above the key maximum → 403', async () => {
      const body = JSON.stringify(CHAT);
      for (const value of [
        'urgent%0d%0aX-Injected: 1',
        'normal, urgent',
        'highest',
        '\xff\xfe',
        'x'.repeat(5000),
        '<script>',
      ]) {
        const r = await rawHttp(
          port,
          Buffer.concat([
            Buffer.from(
              `POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer ${user.key}\r\nContent-Type: application/json\r\nX-Priority: `,
            ),
            Buffer.from(value, 'latin1'),
            Buffer.from(
              `\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
            ),
          ]),
        );
        expectSane(r, value.slice(0, 30));
        expect(r.status, value.slice(0, 30)).toBe(400);
        expect(JSON.parse(r.body).error).toMatchObject({ code: 'invalid_priority', param: 'X-Priority' });
        expect(r.body.length).toBeLessThan(1000);
      }
      const urgent = await call(`${fx.gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { ...user.headers, 'x-priority': 'urgent' },
        body: CHAT,
      });
      expect(urgent.status).toBe(403);
      expect(urgent.body.error.code).toBe('priority_not_allowed');
    });

    it('model names with CRLF / header text: 404 (or relayed inside JSON only), never a header', async () => {
      fx.fake.reset();
      for (const model of [
        'gpt-4o-mini\r\nX-Injected: 1',
        'x\r\n\r\n<html>',
        'gpt-4o-mini\u2028X-Injected: 1',
      ]) {
        const r = await rawHttp(
          port,
          rawRequest(
            [
              'POST /v1/chat/completions HTTP/1.1',
              `Authorization: Bearer ${user.key}`,
              'Content-Type: application/json',
            ],
            JSON.stringify({ ...CHAT, model }),
          ),
        );
        expectSane(r, JSON.stringify(model));
        expect(r.status).toBe(404);
        expect(JSON.parse(r.body).error.code).toBe('model_not_found');
      }
      // A pattern route (wild/*) never matches across a line break (404 above); names with other
      // control characters are forwarded — only inside the JSON body, never in a header — except
      // NUL, which the request log could not store: 400 naming `model` (issue 13).
      const withNul = await rawHttp(
        port,
        rawRequest(
          [
            'POST /v1/chat/completions HTTP/1.1',
            `Authorization: Bearer ${user.key}`,
            'Content-Type: application/json',
          ],
          JSON.stringify({ ...CHAT, model: 'wild/x\u0000' }),
        ),
      );
      expectSane(withNul, 'wild');
      expect(withNul.status).toBe(400);
      expect(JSON.parse(withNul.body).error).toMatchObject({ code: 'validation_failed', param: 'model' });
      const routed = await rawHttp(
        port,
        rawRequest(
          [
            'POST /v1/chat/completions HTTP/1.1',
            `Authorization: Bearer ${user.key}`,
            'Content-Type: application/json',
          ],
          JSON.stringify({ ...CHAT, model: 'wild/x\tX-Injected: 1\u000b' }),
        ),
      );
      expectSane(routed, 'wild');
      expect(routed.status).toBe(200);
      const seen = fx.fake.requests.at(-1)!;
      expect(seen.body.model).toBe('wild/x\tX-Injected: 1\u000b');
      expect(seen.headers['x-injected']).toBeUndefined();
      for (const [name, value] of Object.entries(seen.headers))
        expect(`${name}: ${String(value)}`).toMatch(SANE_HEADER_LINE);
      // Path form: /v1/models/<id with CRLF>
      for (const path of [
        '/v1/models/a%0d%0aX-Injected:%201',
        '/v1/models/wild%2Fx%0D%0ASet-Cookie:%20a=b',
      ]) {
        const r = await rawHttp(
          port,
          rawRequest([`GET ${path} HTTP/1.1`, `Authorization: Bearer ${user.key}`]),
        );
        expectSane(r, path);
      }
      // The metrics exposition stays line-oriented (no injected sample lines).
      const metrics = await call(`${fx.gw.url}/metrics`);
      expect(metrics.text).not.toMatch(/^X-Injected/m);
      expect(metrics.text).not.toMatch(/^Set-Cookie/im);
    });

    it('Host / X-Forwarded-* / Forwarded / absolute-form never change where the relay goes', async () => {
      fx.fake.reset();
      const body = JSON.stringify(CHAT);
      const variants: string[][] = [
        ['POST /v1/chat/completions HTTP/1.1', 'Host: 169.254.169.254'],
        ['POST /v1/chat/completions HTTP/1.1', `Host: 127.0.0.1:${sentinel.port}`],
        [
          'POST /v1/chat/completions HTTP/1.1',
          'Host: evil.example',
          'X-Forwarded-Host: evil.example',
          'X-Forwarded-Proto: https',
          'Forwarded: host=evil.example;proto=https',
          'X-Forwarded-For: 127.0.0.1',
          'X-Real-IP: 10.0.0.1',
        ],
        [
          `POST http://127.0.0.1:${sentinel.port}/v1/chat/completions HTTP/1.1`,
          `Host: 127.0.0.1:${sentinel.port}`,
        ],
        ['POST http://169.254.169.254/v1/chat/completions HTTP/1.1', 'Host: 169.254.169.254'],
      ];
      for (const lines of variants) {
        const r = await rawHttp(
          port,
          [
            ...lines,
            `Authorization: Bearer ${user.key}`,
            'Content-Type: application/json',
            `Content-Length: ${Buffer.byteLength(body)}`,
            'Connection: close',
            '',
            body,
          ].join('\r\n'),
        );
        expectSane(r, lines.join(' | '));
        expect([200, 400, 404], lines[0]).toContain(r.status);
      }
      expect(sentinel.connections, 'no request was sent to the Host the client named').toBe(0);
      expect(fx.fake.requests.length).toBeGreaterThan(0);
      const upstreamHost = new URL(fx.fake.url).host;
      for (const seen of fx.fake.requests) {
        expect(seen.headers.host).toBe(upstreamHost);
        for (const h of [
          'x-forwarded-host',
          'x-forwarded-proto',
          'forwarded',
          'x-forwarded-for',
          'x-real-ip',
        ])
          expect(seen.headers[h], h).toBeUndefined();
      }
    });

    it('X-Original-URL / X-Rewrite-URL / method overrides / path tricks do not reach admin routes', async () => {
      const r1 = await call(`${fx.gw.url}/v1/models`, {
        headers: {
          ...user.headers,
          'x-original-url': '/api/admin/users',
          'x-rewrite-url': '/api/admin/users',
        },
      });
      expect(r1.status).toBe(200);
      expect(r1.body.object).toBe('list');
      const r2 = await call(`${fx.gw.url}/api/admin/providers/${fx.providerId}`, {
        headers: {
          ...bearer(fx.adminKey, false),
          'x-http-method-override': 'DELETE',
          'x-http-method': 'DELETE',
          'x-method-override': 'DELETE',
        },
      });
      expect(r2.status).toBe(200);
      const still = await call(`${fx.gw.url}/api/admin/providers/${fx.providerId}`, {
        headers: bearer(fx.adminKey, false),
      });
      expect(still.status).toBe(200);
      for (const path of [
        '/API/ADMIN/USERS',
        '//api/admin/users',
        '/api/admin/users/',
        '/api/admin/users;x',
        '/api/admin/users%2f',
        '/v1/../api/admin/users',
        '/api/me/../admin/users',
        '/api/admin/%75sers',
        '/api/admin/users?x=/api/me',
      ]) {
        const r = await rawHttp(
          port,
          rawRequest([`GET ${path} HTTP/1.1`, `Authorization: Bearer ${user.key}`]),
        );
        expectSane(r, path);
        expect([400, 403, 404], `${path} → ${r.status}`).toContain(r.status);
      }
    });
  });

  describe('what reaches the upstream', () => {
    const CLIENT_COOKIE = 'session=client-cookie-secret-42';
    const clientHeaders = (credential: Record<string, string>): Record<string, string> => ({
      ...credential,
      cookie: CLIENT_COOKIE,
      'proxy-authorization': 'Basic cHJveHk6c2VjcmV0',
      'openai-organization': 'org-client-chosen',
      'openai-project': 'proj-client-chosen',
      'x-forwarded-for': '203.0.113.9',
      'x-upstream-key': 'sk-client-supplied',
      'x-floodgate-provider-key': 'spoof',
      'api-key': 'azure-style-client-key',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });

    function assertOnlyUpstreamKey(seen: RecordedRequest, clientSecrets: string[]): void {
      expect(seen.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
      expect(seen.key).toBe(UPSTREAM_KEY);
      for (const h of [
        'x-api-key',
        'cookie',
        'proxy-authorization',
        'api-key',
        'x-upstream-key',
        'openai-organization',
        'openai-project',
        'x-forwarded-for',
        'x-floodgate-provider-key',
      ])
        expect(seen.headers[h], h).toBeUndefined();
      const everything = JSON.stringify({ headers: seen.headers, body: seen.body, path: seen.path });
      for (const secret of clientSecrets) expect(everything).not.toContain(secret);
    }

    it.each([
      ['chat', '/v1/chat/completions', CHAT],
      ['chat stream', '/v1/chat/completions', { ...CHAT, stream: true }],
      ['completions', '/v1/completions', { model: 'gpt-4o-mini', prompt: 'hi' }],
      ['completions stream', '/v1/completions', { model: 'gpt-4o-mini', prompt: 'hi', stream: true }],
      ['embeddings', '/v1/embeddings', { model: 'text-embedding-3-small', input: 'hi' }],
    ])('%s: Bearer key, x-api-key and both → upstream sees only its own key', async (_l, path, body) => {
      const credentials: Record<string, string>[] = [
        { authorization: `Bearer ${user.key}` },
        { 'x-api-key': user.key },
        { 'x-api-key': user.key, authorization: `Bearer ${user.key}` },
      ];
      for (const credential of credentials) {
        fx.fake.reset();
        const r = await call(`${fx.gw.url}${path}`, {
          method: 'POST',
          headers: clientHeaders(credential),
          body,
        });
        expect(r.status, r.text).toBe(200);
        expect(fx.fake.requests).toHaveLength(1);
        assertOnlyUpstreamKey(fx.fake.requests[0]!, [
          user.key,
          'client-cookie-secret-42',
          'cHJveHk6c2VjcmV0',
          'azure-style-client-key',
          'sk-client-supplied',
        ]);
        // The client never sees the upstream key either.
        expect(r.text).not.toContain(UPSTREAM_KEY);
        expect([...r.headers.values()].join('\n')).not.toContain(UPSTREAM_KEY);
      }
    });

    it('credentials in the body or query are not turned into headers', async () => {
      fx.fake.reset();
      const r = await call(`${fx.gw.url}/v1/chat/completions?api_key=${user.key}`, {
        method: 'POST',
        headers: user.headers,
        body: { ...CHAT, headers: { authorization: 'Bearer sk-body' }, api_key: 'sk-body-2' },
      });
      expect(r.status).toBe(200);
      const seen = fx.fake.requests[0]!;
      expect(seen.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
      expect(seen.path).toBe('/v1/chat/completions');
      expect(JSON.stringify(seen.headers)).not.toContain('sk-body');
      expect(JSON.stringify(seen)).not.toContain(user.key);
    });
  });

  describe('what comes back from the upstream', () => {
    const HOSTILE = {
      'set-cookie': 'upstream_session=abc; Path=/; HttpOnly',
      authorization: `Bearer ${UPSTREAM_KEY}`,
      'www-authenticate': 'Basic realm="upstream"',
      'proxy-authenticate': 'Basic',
      'x-ratelimit-limit-requests': '10000',
      'x-ratelimit-remaining-requests': '9999',
      'x-ratelimit-reset-tokens': '1s',
      'x-ratelimit-limit': '424242',
      'x-floodgate-provider-key': 'spoofed-by-upstream',
      'x-request-id': 'upstream-req-1',
    };

    async function check(path: string, body: unknown, label: string): Promise<void> {
      fx.fake.reset();
      fx.fake.when({ reply: { headers: HOSTILE } });
      const r = await call(`${fx.gw.url}${path}`, { method: 'POST', headers: user.headers, body });
      expect(r.status, `${label}: ${r.text.slice(0, 200)}`).toBe(200);
      for (const h of [
        'set-cookie',
        'authorization',
        'www-authenticate',
        'proxy-authenticate',
        'x-ratelimit-limit-requests',
        'x-ratelimit-remaining-requests',
        'x-ratelimit-reset-tokens',
      ])
        expect(r.headers.get(h), `${label}: ${h}`).toBeNull();
      expect(r.headers.get('x-floodgate-provider-key'), label).toBe(Object.values(fx.keyIds)[0]);
      expect(r.headers.get('x-request-id'), label).not.toBe('upstream-req-1');
      // The gateway's own X-RateLimit-* stay its own (the client key's policy, not the upstream's).
      expect(r.headers.get('x-ratelimit-limit'), label).not.toBe('424242');
      expect([...r.headers.values()].join('\n')).not.toContain(UPSTREAM_KEY);
    }

    it('non-streaming and streaming answers: no upstream credentials, cookies or pool limits; our headers win', async () => {
      await check('/v1/chat/completions', CHAT, 'chat');
      await check('/v1/chat/completions', { ...CHAT, stream: true }, 'chat stream');
      await check('/v1/embeddings', { model: 'text-embedding-3-small', input: 'x' }, 'embeddings');
    });

    // FINDING (fails until fixed): clientResponseHeaders drops x-ratelimit-* but not the IETF
    // RateLimit / RateLimit-Policy names, and the relay applies upstream headers after the guard's.
    it('the upstream cannot overwrite the gateway’s RateLimit / RateLimit-Policy headers', async () => {
      const problems: string[] = [];
      for (const stream of [false, true]) {
        fx.fake.reset();
        fx.fake.when({
          reply: {
            headers: { ratelimit: '"upstream";r=999999;t=1', 'ratelimit-policy': '"upstream";q=999999;w=1' },
          },
        });
        const r = await call(`${fx.gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: user.headers,
          body: { ...CHAT, stream },
        });
        expect(r.status).toBe(200);
        for (const h of ['ratelimit', 'ratelimit-policy']) {
          const value = r.headers.get(h) ?? '';
          if (value.includes('upstream') || !value.includes('"key"'))
            problems.push(`stream=${stream} ${h}: ${value}`);
        }
      }
      expect(problems).toEqual([]);
    });

    it('upstream errors (400, 401, 429, 500) carry none of the upstream’s headers', async () => {
      for (const status of [400, 401, 429, 500]) {
        fx.fake.reset();
        fx.fake.when({ reply: { status, headers: HOSTILE } });
        const r = await call(`${fx.gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: user.headers,
          body: CHAT,
        });
        expect(r.status, String(status)).toBeGreaterThanOrEqual(400);
        for (const h of ['set-cookie', 'authorization', 'www-authenticate', 'x-ratelimit-limit-requests'])
          expect(r.headers.get(h), `${status}: ${h}`).toBeNull();
        expect(r.text).not.toContain(UPSTREAM_KEY);
        // 401 from the upstream marks the key invalid: re-enable it for the next case.
        await call(`${fx.gw.url}/api/admin/provider-keys/${Object.values(fx.keyIds)[0]}`, {
          method: 'PATCH',
          headers: bearer(fx.adminKey, false),
          body: { enabled: true },
        });
      }
    });

    // FINDING (fails until fixed): a 3xx from the upstream is relayed with its Location, so an upstream
    // (or whoever controls its responses) can send clients elsewhere; SDKs re-send the body and some
    // the Authorization header (the client's fg_ key) on 307/308.
    it('an upstream redirect is neither followed nor passed to the client', async () => {
      const problems: string[] = [];
      for (const status of [301, 302, 307, 308]) {
        fx.fake.reset();
        fx.fake.when({
          reply: { status, headers: { location: `http://127.0.0.1:${sentinel.port}/v1/chat/completions` } },
        });
        const r = await call(`${fx.gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: user.headers,
          body: CHAT,
          redirect: 'manual',
        });
        if (r.headers.get('location') !== null || (r.status >= 300 && r.status < 400))
          problems.push(`upstream ${status} → client ${r.status} location=${r.headers.get('location')}`);
      }
      expect(sentinel.connections, 'the gateway itself never follows').toBe(0);
      expect(problems).toEqual([]);
    });
  });
});
