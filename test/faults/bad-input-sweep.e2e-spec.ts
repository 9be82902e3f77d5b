/**
 * Bad-input sweep: every operation of the running app's OpenAPI document (/docs-json) × hostile
 * bodies, path parameters, query parameters and headers, authenticated as an admin so each request
 * reaches its handler. Pass criteria for every combination: never a 5xx; every 4xx in the one error
 * shape (CONTRACT.md) with an `x-request-id` header equal to `error.request_id`; a 400 caused by a
 * hostile body or query field names that field in `param`; no answer echoes a hostile URL.
 * Plus slow bodies (short of their Content-Length, or trickled a byte at a time): the connection is
 * answered 408 in the error shape, or closed, within BODY_READ_TIMEOUT_MS plus a bounded slack.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey, signHs256, type UserWithKey } from '../support/auth.js';
import type { Mode } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';
import { call, documentedOperations, NO_CLIENT_LIMITS, rawHttp } from '../security/helpers.js';

const JWT_SECRET = 'bad-input-sweep-jwt-secret-0123456789';
const BODY_READ_TIMEOUT_MS = 1500;
/** What the slow-body tests allow beyond BODY_READ_TIMEOUT_MS before the server must have acted. */
const SLOW_BODY_SLACK_MS = 3000;
const CONCURRENCY = 8;
const LONG_SEGMENT = 'a'.repeat(600);

interface OpenApiDoc {
  paths: Record<string, Record<string, OpenApiOperation>>;
  components: { schemas: Record<string, JsonSchema> };
}
interface OpenApiOperation {
  parameters?: { in: string; name: string }[];
  requestBody?: { content: Record<string, { schema: JsonSchema }> };
}
interface JsonSchema {
  $ref?: string;
  properties?: Record<string, unknown>;
  required?: string[];
}

interface Answer {
  status: number;
  header(name: string): string | null;
  text: string;
}

interface Combo {
  op: string;
  input: string;
  /** The body or query field the hostile value sits in: a 400 must name it in `param`. */
  field?: string;
  send(): Promise<Answer>;
}

/** A JSON value nested `depth` levels deep (arrays or objects), as text (JSON.stringify would overflow). */
function deepJson(depth: number, kind: 'array' | 'object'): string {
  return kind === 'array'
    ? '['.repeat(depth) + ']'.repeat(depth)
    : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

/** Hostile values for one body field, as JSON text. */
const FIELD_VALUES: Record<string, string> = {
  nul: JSON.stringify('a\u0000b'),
  'lone-surrogate': '"\\ud800x"',
  'lone-low-surrogate': '"x\\udc00"',
  'nul-in-array': JSON.stringify(['ok', 'a\u0000b']),
  'surrogate-in-array': '["ok","\\ud800"]',
  'nul-key': '{"k\\u0000":"v"}',
  'nul-in-object': '{"k":"v\\u0000"}',
  'huge-int': '99999999999999999999',
  'huge-negative': '-99999999999999999999',
  'huge-float': '1e308',
  fraction: '1.5',
  'wrong-type-bool': 'true',
  'wrong-type-object': '{"a":[1,{"b":null}]}',
  'array-of-objects': '[{}]',
  null: 'null',
  'deep-20k': deepJson(20_000, 'array'),
};

/** Hostile whole bodies (for every operation that takes one). */
const WHOLE_BODIES: Record<string, string> = {
  'deep-array-20k': deepJson(20_000, 'array'),
  'deep-object-20k': deepJson(20_000, 'object'),
  'array-instead-of-object': '[]',
  'string-instead-of-object': '"x"',
  'number-instead-of-object': '99999999999999999999',
  'nul-key': '{"\\u0000":1}',
  'surrogate-key': '{"\\ud800":1}',
  'proto-key': '{"__proto__":{"x":1}}',
};

/** Hostile path segments, written raw on the wire (no client-side normalisation). */
const PATH_VALUES: Record<string, string> = {
  'nul-raw': '\u0000',
  'nul-encoded': '%00',
  'nul-in-id': `${randomUUID()}%00`,
  'malformed-percent': '%E0%A4%A',
  'lone-surrogate-utf8': '%ED%A0%80',
  'overlong-nul': '%C0%80',
  'long-600': LONG_SEGMENT,
  'dot-dot': '..',
  'huge-int': '99999999999999999999',
  emoji: '%F0%9F%98%80',
};

/** Hostile query values, already percent-encoded. */
const QUERY_VALUES: Record<string, string> = {
  'huge-int': '99999999999999999999',
  'huge-negative': '-99999999999999999999',
  nul: 'a%00b',
  'lone-surrogate-utf8': '%ED%A0%80',
  'malformed-percent': '%E0%A4%A',
  'exp-overflow': '1e400',
  'not-a-number': 'abc',
  'year-zero': '0000-01-01T00:00:00Z',
  'repeated-param': '1&__SAME__=2',
  long: 'x'.repeat(4000),
};

async function pool<T>(items: T[], size: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(size, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

function fromCall(r: { status: number; headers: Headers; text: string }): Answer {
  return { status: r.status, header: (n) => r.headers.get(n), text: r.text };
}

/** What is wrong with an answer (null when nothing). */
function problemWith(combo: Combo, a: Answer): string | null {
  if (a.status === 0) return 'no answer (connection closed or timed out)';
  if (a.status >= 500) return `status ${a.status}: ${a.text.slice(0, 300)}`;
  const requestId = a.header('x-request-id');
  if (!requestId) return `status ${a.status} without x-request-id`;
  if (a.text.includes(LONG_SEGMENT)) return `status ${a.status} echoes the URL`;
  if (a.status < 400) return null;
  let body: any;
  try {
    body = JSON.parse(a.text);
  } catch {
    return `status ${a.status} with a non-JSON body: ${a.text.slice(0, 120)}`;
  }
  const e = body?.error;
  const keys = e && typeof e === 'object' ? Object.keys(e).sort().join(',') : '';
  if (keys !== 'code,message,param,request_id,type')
    return `status ${a.status} outside the error shape: ${a.text.slice(0, 160)}`;
  if (e.request_id !== requestId) return `status ${a.status}: error.request_id ≠ x-request-id`;
  if (combo.field && a.status === 400 && (typeof e.param !== 'string' || !e.param.startsWith(combo.field)))
    return `400 naming param ${JSON.stringify(e.param)} instead of ${combo.field}: ${e.message.slice(0, 120)}`;
  return null;
}

function sweepFor(mode: Mode): void {
  describe(`bad-input sweep (${mode})`, () => {
    let fx: RelayFixture;
    let port: number;
    let doc: OpenApiDoc;
    let target: UserWithKey;
    let sweepProviderId: string;
    let sweepUpstreamKeyId: string;
    let sweepRouteId: string;
    let sweepWebhookId: string;
    let sweepTeamId: string;

    beforeAll(async () => {
      fx = await startRelay(mode, {
        env: { ...NO_CLIENT_LIMITS, JWT_SECRET, BODY_READ_TIMEOUT_MS: String(BODY_READ_TIMEOUT_MS) },
      });
      port = Number(new URL(fx.gw.url).port);
      doc = (await call(`${fx.gw.url}/docs-json`)).body as OpenApiDoc;
      // Targets the sweep may damage: never the admin's own user or the relay's provider.
      target = await createUserWithKey(fx.gw, fx.adminKey, 'user');
      const p = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/providers', {
        name: `sweep-${randomBytes(4).toString('hex')}`,
        base_url: fx.fake.baseUrl,
        models: ['sweep-model'],
      });
      sweepProviderId = p.body.id;
      const k = await adminCall(fx.gw, fx.adminKey, 'POST', `/api/admin/providers/${sweepProviderId}/keys`, {
        label: 'sweep',
        key: `sk-sweep-${randomBytes(8).toString('hex')}`,
      });
      sweepUpstreamKeyId = k.body.id;
      const r = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/routes', {
        model: `sweep-${randomBytes(4).toString('hex')}`,
        targets: [{ provider_id: sweepProviderId, model: 'sweep-model' }],
      });
      sweepRouteId = r.body.id;
      const w = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/webhooks', {
        url: `${fx.fake.baseUrl}/sweep-hook`,
        events: ['*'],
      });
      sweepWebhookId = w.body.id;
      const t = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/teams', {
        name: `sweep-${randomBytes(4).toString('hex')}`,
      });
      sweepTeamId = t.body.id;
    });
    afterAll(async () => {
      await fx?.close();
    });

    /** A valid value for a path parameter (a real target, or a fresh id for DELETE). */
    function validParam(method: string, path: string, name: string): string {
      if (path.startsWith('/v1/models/')) return 'gpt-4o-mini';
      if (path.startsWith('/v1/responses/')) return 'resp_sweep_unknown';
      if (name === 'subject') return `key:${method === 'DELETE' ? randomUUID() : target.keyId}`;
      if (method === 'DELETE') return randomUUID();
      if (path.startsWith('/api/admin/users/')) return target.user.id;
      // the target's key (the admin's own-key route answers 404 for it: not the admin's)
      if (path.startsWith('/api/admin/api-keys/') || path.startsWith('/api/keys/')) return target.keyId;
      if (path.startsWith('/api/admin/providers/')) return sweepProviderId;
      if (path.startsWith('/api/admin/routes/')) return sweepRouteId;
      if (path.startsWith('/api/admin/webhooks/')) return sweepWebhookId;
      if (path.startsWith('/api/admin/requests/')) return randomUUID();
      if (path.startsWith('/api/admin/teams/')) return name === 'user_id' ? target.user.id : sweepTeamId;
      if (path.startsWith('/api/admin/provider-keys/') || path.startsWith('/api/admin/adaptive/keys/'))
        return sweepUpstreamKeyId;
      throw new Error(`no valid value for the path parameter ${name} of ${method} ${path}: add one`);
    }

    /** A valid body for an operation that takes one (hostile values replace one field of it). */
    function baseBody(op: string): Record<string, unknown> {
      const uniq = randomBytes(4).toString('hex');
      const bodies: Record<string, Record<string, unknown>> = {
        'POST /api/keys': { name: `sweep-${uniq}` },
        'POST /api/admin/users': { email: `sweep-${uniq}@example.com`, role: 'user' },
        'PATCH /api/admin/users/{id}': { name: 'Renamed' },
        'PATCH /api/keys/{id}': { name: `sweep-${uniq}` },
        'PATCH /api/admin/api-keys/{id}': { name: `sweep-${uniq}` },
        'POST /api/admin/users/{id}/keys': { name: `sweep-${uniq}` },
        'POST /api/admin/providers': { name: `sweep-${uniq}`, base_url: fx.fake.baseUrl, models: ['m'] },
        'PATCH /api/admin/providers/{id}': { timeout_ms: 7000 },
        'POST /api/admin/providers/{id}/keys': { label: `sweep-${uniq}`, key: `sk-sweep-${uniq}` },
        'PATCH /api/admin/provider-keys/{id}': { priority: 5 },
        'PATCH /api/admin/adaptive/keys/{id}/mode': { enabled: false, fixed_limit: 3 },
        'POST /api/admin/routes': {
          model: `sweep-${uniq}`,
          targets: [{ provider_id: sweepProviderId, model: 'sweep-model' }],
        },
        'PATCH /api/admin/routes/{id}': { max_attempts: 2 },
        'POST /api/admin/webhooks': { url: `${fx.fake.baseUrl}/sweep-hook`, events: ['*'] },
        'POST /api/admin/teams': { name: `sweep-${uniq}` },
        'PATCH /api/admin/teams/{id}': { weight: 2 },
        'POST /api/admin/teams/{id}/members/{user_id}': { role: 'member' },
        'POST /v1/chat/completions': { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
        'POST /v1/completions': { model: 'gpt-4o-mini', prompt: 'hi' },
        'POST /v1/embeddings': { model: 'text-embedding-3-small', input: 'hi' },
        'POST /v1/responses': { model: 'gpt-4o-mini', input: 'hi' },
        // No anthropic-kind provider in this fixture: a valid body asks for an unknown model (404).
        'POST /v1/messages': {
          model: 'claude-sweep',
          max_tokens: 16,
          messages: [{ role: 'user', content: 'hi' }],
        },
      };
      const body = bodies[op];
      if (!body) throw new Error(`no base body for ${op}: add one`);
      return body;
    }

    function schemaOf(op: OpenApiOperation): JsonSchema | null {
      const schema = op.requestBody?.content['application/json']?.schema;
      if (!schema) return null;
      return schema.$ref ? doc.components.schemas[schema.$ref.split('/').pop()!]! : schema;
    }

    /** Builds every combination for one operation. */
    function combosFor(opName: string): Combo[] {
      const [method, path] = opName.split(' ') as [string, string];
      const op = doc.paths[path]![method.toLowerCase()]!;
      const pathParams = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      const queryParams = (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name);
      const schema = schemaOf(op);
      const fill = (overrides: Record<string, string> = {}) =>
        path.replace(/\{(\w+)\}/g, (_, name: string) => overrides[name] ?? validParam(method, path, name));
      const admin = bearer(fx.adminKey, false);
      const combos: Combo[] = [];
      const hasBody = method !== 'GET' && method !== 'HEAD';

      // Hostile path parameters, raw on the wire.
      for (const name of pathParams) {
        for (const [label, value] of Object.entries(PATH_VALUES)) {
          combos.push({
            op: opName,
            input: `path ${name}=${label}`,
            send: async () => {
              const body = hasBody && schema ? JSON.stringify(baseBody(opName)) : '';
              const r = await rawHttp(
                port,
                `${method} ${fill({ [name]: value })} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${fx.adminKey}\r\n` +
                  (body
                    ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`
                    : '') +
                  `Connection: close\r\n\r\n${body}`,
              );
              return {
                status: r.status,
                header: (n) => r.headers.get(n)?.[0] ?? null,
                text: r.body,
              };
            },
          });
        }
      }

      // Hostile query parameters (each documented one), on a valid path.
      for (const name of queryParams) {
        for (const [label, value] of Object.entries(QUERY_VALUES)) {
          combos.push({
            op: opName,
            input: `query ${name}=${label}`,
            field: label === 'repeated-param' ? undefined : name,
            send: async () => {
              const url = `${fx.gw.url}${fill()}?${name}=${value.replace('__SAME__', name)}`;
              const body = hasBody && schema ? baseBody(opName) : undefined;
              return fromCall(await call(url, { method, headers: admin, body }));
            },
          });
        }
      }

      if (hasBody) {
        // Hostile whole bodies.
        for (const [label, text] of Object.entries(WHOLE_BODIES)) {
          combos.push({
            op: opName,
            input: `body ${label}`,
            send: async () =>
              fromCall(
                await call(`${fx.gw.url}${fill()}`, {
                  method,
                  headers: { ...admin, 'content-type': 'application/json' },
                  body: text,
                }),
              ),
          });
        }
      }

      // Hostile values of each body field, the rest of the body valid.
      if (schema) {
        const fields = [...new Set([...Object.keys(schema.properties ?? {}), ...(schema.required ?? [])])];
        for (const field of fields) {
          for (const [label, text] of Object.entries(FIELD_VALUES)) {
            combos.push({
              op: opName,
              input: `field ${field}=${label}`,
              field,
              send: async () => {
                const marker = `__HOSTILE_${randomBytes(6).toString('hex')}__`;
                const json = JSON.stringify({ ...baseBody(opName), [field]: marker }).replace(
                  JSON.stringify(marker),
                  text,
                );
                return fromCall(
                  await call(`${fx.gw.url}${fill()}`, {
                    method,
                    headers: { ...admin, 'content-type': 'application/json' },
                    body: json,
                  }),
                );
              },
            });
          }
        }
      }

      // Hostile headers: signed JWTs with unstorable claims, a huge X-Request-Id.
      const jwtCases: Record<string, Record<string, string>> = {
        'jwt sub with NUL': { sub: `sweep\u0000${randomUUID()}` },
        'jwt sub with lone surrogate': { sub: `sweep\ud800${randomUUID()}` },
        'jwt email with NUL': { sub: `sweep-${randomUUID()}`, email: 'a\u0000b@example.com' },
        'jwt name with NUL': { sub: `sweep-${randomUUID()}`, name: 'Eve\u0000' },
      };
      for (const [label, claims] of Object.entries(jwtCases)) {
        combos.push({
          op: opName,
          input: `header ${label}`,
          send: async () => {
            const token = signHs256(JWT_SECRET, { role: 'admin', ...claims });
            const body = hasBody && schema ? baseBody(opName) : undefined;
            return fromCall(
              await call(`${fx.gw.url}${fill()}`, { method, headers: bearer(token, false), body }),
            );
          },
        });
      }
      combos.push({
        op: opName,
        input: 'header x-request-id 8000 chars',
        send: async () => {
          const body = hasBody && schema ? baseBody(opName) : undefined;
          const r = await call(`${fx.gw.url}${fill()}`, {
            method,
            headers: { ...admin, 'x-request-id': 'r'.repeat(8000) },
            body,
          });
          return fromCall(r);
        },
      });
      return combos;
    }

    it('no route answers hostile input with a 5xx or outside the error shape', async () => {
      const ops = documentedOperations(doc);
      expect(ops.length).toBeGreaterThan(30);
      const combos = ops.flatMap(combosFor);
      const problems: string[] = [];
      await pool(combos, CONCURRENCY, async (combo) => {
        let answer: Answer;
        // A 503 rate_limiter_overloaded says the machine was too busy for the limiter to decide in
        // time (RATE_LIMIT_TIMEOUT_MS), not that the input broke anything: asked again, up to 3 times.
        for (let tries = 0; ; tries++) {
          try {
            answer = await combo.send();
          } catch (err) {
            answer = { status: 0, header: () => null, text: String(err) };
          }
          if (!(answer.status === 503 && answer.text.includes('"rate_limiter_overloaded"')) || tries >= 3)
            break;
          await new Promise((r) => setTimeout(r, 200));
        }
        const problem = problemWith(combo, answer);
        if (problem) problems.push(`${combo.op} × ${combo.input}: ${problem}`);
      });
      const fivexx = problems.filter((p) => /: status 5\d\d: /.test(p)).length;
      console.log(
        `[${mode}] ${combos.length} route × input combinations, ${problems.length} bad (${fivexx} 5xx)` +
          (problems.length ? `:\n  ${problems.sort().join('\n  ')}` : ''),
      );
      expect(problems).toEqual([]);
    });

    it('each kind of bad input gets its documented answer', async () => {
      const admin = bearer(fx.adminKey);
      const post = (path: string, body: string, headers: Record<string, string> = admin) =>
        call(`${fx.gw.url}${path}`, { method: 'POST', headers, body });
      const expectError = (
        r: { status: number; body: any; headers: Headers },
        status: number,
        error: Record<string, unknown>,
      ) => {
        expect(r.status).toBe(status);
        expect(r.body.error).toMatchObject(error);
        expect(r.headers.get('x-request-id')).toBe(r.body.error.request_id);
      };

      // JSON nested 20k deep, relay and admin alike: refused by the body parser, naming the field.
      const deepChat = `{"model":"gpt-4o-mini","messages":${deepJson(20_000, 'array')}}`;
      expectError(await post('/v1/chat/completions', deepChat), 400, {
        code: 'json_too_deep',
        param: 'messages',
      });
      expectError(await post('/api/keys', deepJson(20_000, 'object')), 400, { code: 'json_too_deep' });
      // 64 levels (the limit) still pass the parser (and then fail validation as an unknown field).
      const atLimit = `{"name":"ok","x":${'['.repeat(63)}${']'.repeat(63)}}`;
      expectError(await post('/api/keys', atLimit), 400, { code: 'validation_failed', param: 'x' });

      // Strings Postgres can't store, in a body, a query, a path parameter.
      expectError(await post('/api/keys', '{"name":"a\\u0000b"}'), 400, {
        type: 'invalid_request_error',
        code: 'validation_failed',
        param: 'name',
      });
      expectError(await post('/api/keys', '{"name":"k","allowed_models":["ok","\\ud800"]}'), 400, {
        param: 'allowed_models[1]',
      });
      expectError(await call(`${fx.gw.url}/api/admin/audit?action=a%00b`, { headers: admin }), 400, {
        param: 'action',
      });
      expectError(await call(`${fx.gw.url}/api/admin/users/a%00b`, { headers: admin }), 400, {
        param: 'id',
      });
      // An offset beyond a bigint.
      expectError(
        await call(`${fx.gw.url}/api/admin/users?offset=99999999999999999999`, { headers: admin }),
        400,
        { param: 'offset' },
      );
      // The relay refuses a model it would have to store; message contents pass through as they came.
      expectError(
        await post(
          '/v1/chat/completions',
          '{"model":"gpt-4o\\u0000","messages":[{"role":"user","content":"x"}]}',
        ),
        400,
        { param: 'model' },
      );
      const nulContent = await post(
        '/v1/chat/completions',
        '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a\\u0000b"}]}',
      );
      expect(nulContent.status).toBe(200);

      // A signed JWT whose identity claims can't be stored is an invalid token.
      for (const claims of [
        { sub: 'a\u0000b' },
        { sub: 's1', email: 'a\u0000@x.io' },
        { sub: 's2', name: '\ud800' },
      ]) {
        const token = signHs256(JWT_SECRET, { role: 'admin', ...claims });
        expectError(await call(`${fx.gw.url}/api/me`, { headers: bearer(token, false) }), 401, {
          type: 'authentication_error',
          code: 'invalid_token',
        });
      }

      // URLs the router refuses: in the one shape, with a request id, never echoing the URL.
      const long = await rawHttp(
        port,
        `GET /api/admin/users/${LONG_SEGMENT} HTTP/1.1\r\nHost: x\r\nX-Request-Id: long-1\r\nConnection: close\r\n\r\n`,
      );
      expect(long.status).toBe(414);
      expect(JSON.parse(long.body).error).toMatchObject({
        type: 'invalid_request_error',
        code: 'uri_too_long',
        request_id: 'long-1',
      });
      expect(long.headers.get('x-request-id')).toEqual(['long-1']);
      expect(long.raw).not.toContain(LONG_SEGMENT);
      const bad = await rawHttp(
        port,
        `GET /api/admin/users/%E0%A4%A HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      expect(bad.status).toBe(400);
      expect(JSON.parse(bad.body).error).toMatchObject({ code: 'invalid_url', param: null });
      expect(bad.headers.get('x-request-id')?.[0]).toBe(JSON.parse(bad.body).error.request_id);
      expect(bad.raw).not.toContain('%E0%A4%A');
    });

    /** Opens a raw connection, sends the head and `first` bytes, then `trickle` (one byte per tick). */
    function slowBody(options: { declared: number; first: string; trickleEveryMs?: number }): Promise<{
      status: number;
      text: string;
      elapsedMs: number;
      closed: boolean;
    }> {
      const started = Date.now();
      const capMs = BODY_READ_TIMEOUT_MS + SLOW_BODY_SLACK_MS + 5000;
      return new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        let data = '';
        let timer: NodeJS.Timeout | undefined;
        const done = (closed: boolean) => {
          clearInterval(timer);
          clearTimeout(cap);
          socket.destroy();
          const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
          resolve({ status, text: data, elapsedMs: Date.now() - started, closed });
        };
        const cap = setTimeout(() => done(false), capMs);
        socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
        socket.on('error', () => undefined);
        socket.on('close', () => done(true));
        socket.write(
          `POST /api/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${fx.adminKey}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${options.declared}\r\n\r\n${options.first}`,
        );
        if (options.trickleEveryMs)
          timer = setInterval(() => socket.write(' '), options.trickleEveryMs).unref();
      });
    }

    function expectTimedOut(r: { status: number; text: string; elapsedMs: number; closed: boolean }): void {
      expect(r.closed, `connection still open after ${r.elapsedMs} ms`).toBe(true);
      expect(r.elapsedMs).toBeLessThan(BODY_READ_TIMEOUT_MS + SLOW_BODY_SLACK_MS);
      if (r.status !== 0) {
        expect(r.status).toBe(408);
        const body = JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4));
        expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'request_timeout' });
        expect(r.text).toMatch(new RegExp(`\\r\\nx-request-id: ${body.error.request_id}\\r\\n`, 'i'));
      }
    }

    it('a body short of its Content-Length is cut off after BODY_READ_TIMEOUT_MS', async () => {
      expectTimedOut(await slowBody({ declared: 1000, first: '{"name":"slow' }));
    });

    it('a body trickled a byte at a time is cut off after BODY_READ_TIMEOUT_MS', async () => {
      expectTimedOut(await slowBody({ declared: 1000, first: '{"name":"slow', trickleEveryMs: 400 }));
    });
  });
}

sweepFor('distributed');
sweepFor('embedded');
