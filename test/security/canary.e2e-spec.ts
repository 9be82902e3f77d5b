/**
 * Canary run. The real process (node dist/src/main.js, LOG_FORMAT=json, LOG_LEVEL=debug) is given
 * canary secrets everywhere a secret enters Floodgate — client API keys (bootstrap, generated,
 * unknown, revoked), JWTs and the JWT secret, upstream provider keys (created, replaced, deleted,
 * rejected by the upstream), the encryption key, the metrics token, client cookies and proxy
 * credentials — and one representative exercise of EVERY route family (admin writes and reads,
 * provider keys, relay non-stream / stream / upstream errors, client 429s, rate-limit admin,
 * adaptive, status + SSE, metrics, audit, health, docs, dashboard). Then, after a graceful
 * shutdown (so batched writes are flushed), it scans every log line, every response status line,
 * header and body, every database row (all tables) and, in distributed mode, every Redis key and
 * value under the instance's prefix — raw, hex, base64, base64url (all alignments), percent-encoded.
 * Nothing may be found, except each generated client key in the one 201 response that hands it out.
 *
 * (The issue asks for "the whole e2e suite with canary keys"; this is a single representative pass
 * over every route family instead, which is what the brief accepts.)
 */
import { PGlite } from '@electric-sql/pglite';
import { Redis } from 'ioredis';
import jwt from 'jsonwebtoken';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../support/auth.js';
import {
  canaryApiKey,
  canaryValue,
  needlesFor,
  scanForCanaries,
  type Canary,
  type Haystack,
} from '../support/canary.js';
import { FakeProvider } from '../support/fake-provider.js';
import {
  freePort,
  isolatedEnv,
  MODES,
  spawnGateway,
  type GatewayProcess,
  type Mode,
} from '../support/gateway.js';
import { TEST_REDIS_URL } from '../support/services.js';

interface Recorded {
  n: number;
  label: string;
  status: number;
  headers: string;
  body: string;
}

class Client {
  readonly responses: Recorded[] = [];
  constructor(private readonly base: string) {}

  /** One request; the whole exchange (status, headers, body; SSE bounded) is recorded for the scan. */
  async req(
    method: string,
    path: string,
    options: { headers?: Record<string, string>; body?: unknown; label?: string; sseMs?: number } = {},
  ): Promise<{ status: number; body: any; text: string; n: number }> {
    const controller = new AbortController();
    const hasBody = options.body !== undefined;
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: { ...(hasBody ? { 'content-type': 'application/json' } : {}), ...options.headers },
      body: hasBody ? JSON.stringify(options.body) : undefined,
      signal: controller.signal,
      redirect: 'manual',
    });
    let text = '';
    const sse = (res.headers.get('content-type') ?? '').startsWith('text/event-stream');
    if (sse && path.includes('/status/stream')) {
      const reader = res.body!.getReader();
      const timer = setTimeout(() => controller.abort(), options.sseMs ?? 1500);
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          text += Buffer.from(value).toString('utf8');
        }
      } catch {
        // aborted by the timer
      } finally {
        clearTimeout(timer);
      }
    } else {
      text = await res.text();
    }
    const n = this.responses.length;
    this.responses.push({
      n,
      label: options.label ?? `${method} ${path}`,
      status: res.status,
      headers: [...res.headers.entries()].map(([k, v]) => `${k}: ${v}`).join('\n'),
      body: text,
    });
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body, text, n };
  }
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(p));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

async function tableDump(
  query: (sql: string) => Promise<{ rows: Record<string, unknown>[] }>,
): Promise<Haystack[]> {
  const tables = (
    await query(
      `SELECT table_schema, table_name FROM information_schema.tables
        WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')`,
    )
  ).rows as { table_schema: string; table_name: string }[];
  const out: Haystack[] = [];
  for (const t of tables) {
    const rows = (
      await query(`SELECT row_to_json(t)::text AS j FROM "${t.table_schema}"."${t.table_name}" t`)
    ).rows as { j: string }[];
    out.push({
      source: `db ${t.table_schema}.${t.table_name} (${rows.length} rows)`,
      text: rows.map((r) => r.j).join('\n'),
    });
  }
  return out;
}

async function redisDump(prefix: string): Promise<Haystack[]> {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  const out: Haystack[] = [];
  try {
    let cursor = '0';
    const lines: string[] = [];
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const type = await redis.type(key);
        let value: unknown;
        if (type === 'string') value = await redis.getBuffer(key).then((b) => b?.toString('latin1'));
        else if (type === 'hash') value = await redis.hgetall(key);
        else if (type === 'zset') value = await redis.zrange(key, 0, -1, 'WITHSCORES');
        else if (type === 'list') value = await redis.lrange(key, 0, -1);
        else if (type === 'set') value = await redis.smembers(key);
        else if (type === 'stream') value = await redis.xrange(key, '-', '+');
        lines.push(`${key} ${type} ${JSON.stringify(value)}`);
      }
    } while (cursor !== '0');
    out.push({ source: `redis ${prefix}* (${lines.length} keys)`, text: lines.join('\n') });
  } finally {
    redis.disconnect();
  }
  return out;
}

describe.each(MODES)('security: canary run over every route family (%s mode)', (mode: Mode) => {
  let gw: GatewayProcess | undefined;
  let fake: FakeProvider | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  let dataDir: string | undefined;
  afterAll(async () => {
    await gw?.stop();
    await fake?.close();
    await cleanup?.();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('no canary in any log line, response, database row or Redis value', { timeout: 90_000 }, async () => {
    // ---- canaries ------------------------------------------------------------------------------
    const adminKey = canaryApiKey();
    const jwtSecret = canaryValue('jwt-secret-', 32);
    const encryptionKeyBytes = Buffer.concat([Buffer.from('CANARYenc'), randomBytes(23)]);
    const encryptionKey = encryptionKeyBytes.toString('base64');
    const metricsToken = canaryValue('metrics-token-');
    const prov = {
      primary: canaryValue('sk-prov1-'),
      secondary: canaryValue('sk-prov2-'),
      replacedOld: canaryValue('sk-old-'),
      replacedNew: canaryValue('sk-new-'),
      deleted: canaryValue('sk-deleted-'),
    };
    const unknownKey = canaryApiKey();
    const clientCookie = canaryValue('cookie-');
    const proxyPassword = canaryValue('proxypw-');
    const canaries: Canary[] = [
      { name: 'bootstrap admin key', value: adminKey },
      { name: 'JWT_SECRET', value: jwtSecret },
      { name: 'ENCRYPTION_KEYS material (base64)', value: encryptionKey },
      { name: 'ENCRYPTION_KEYS material (base64url)', value: encryptionKeyBytes.toString('base64url') },
      { name: 'ENCRYPTION_KEYS material (hex)', value: encryptionKeyBytes.toString('hex') },
      { name: 'METRICS_TOKEN', value: metricsToken },
      ...Object.entries(prov).map(([k, value]) => ({ name: `provider key ${k}`, value })),
      { name: 'unknown client key', value: unknownKey },
      { name: 'client cookie', value: clientCookie },
      { name: 'proxy password', value: proxyPassword },
    ];
    /** Generated client keys: allowed only in the one 201 response that hands each out. */
    const issuedIn = new Map<string, number>();

    // ---- the real process ------------------------------------------------------------------------
    fake = await FakeProvider.start({ models: ['gpt-4o-mini', 'text-embedding-3-small'] });
    const port = await freePort();
    const isolated = await isolatedEnv(mode, {
      PORT: String(port),
      LOG_LEVEL: 'debug',
      LOG_FORMAT: 'json',
      ADMIN_BOOTSTRAP_KEY: adminKey,
      JWT_SECRET: jwtSecret,
      ENCRYPTION_KEYS: `canary1:${encryptionKey}`,
      METRICS_TOKEN: metricsToken,
      ALLOW_PRIVATE_UPSTREAMS: 'true',
      KEY_USAGE_FLUSH_MS: '200',
      RATE_LIMIT_KEY_RPM: '1000',
    });
    cleanup = isolated.cleanup;
    const env = { ...isolated.env };
    if (mode === 'embedded') {
      dataDir = mkdtempSync(join(tmpdir(), 'fg-canary-'));
      env.DATA_DIR = dataDir;
    }
    gw = spawnGateway(env);
    await gw.waitForOutput(/floodgate started/, 60_000);
    // Files written from here on are the run's (initdb and migrations are done).
    const startedAt = Date.now();
    const c = new Client(gw.url);
    const admin = { authorization: `Bearer ${adminKey}` };
    const expectStatus = (r: { status: number; text: string }, status: number, what: string) =>
      expect(r.status, `${what}: ${r.text.slice(0, 200)}`).toBe(status);

    // ---- infrastructure ---------------------------------------------------------------------------
    expectStatus(await c.req('GET', '/health'), 200, 'health');
    expectStatus(await c.req('GET', '/health/ready'), 200, 'ready');
    expectStatus(await c.req('GET', '/docs-json'), 200, 'docs');
    expectStatus(await c.req('GET', '/dashboard'), 200, 'dashboard');
    expectStatus(
      await c.req('GET', '/metrics', { headers: { authorization: `Bearer ${metricsToken}x` } }),
      401,
      'metrics bad token',
    );

    // ---- identity, bad credentials ---------------------------------------------------------------
    expectStatus(await c.req('GET', '/api/me', { headers: admin }), 200, 'me');
    expectStatus(await c.req('GET', '/api/me', { headers: { 'x-api-key': adminKey } }), 200, 'me x-api-key');
    expectStatus(
      await c.req('GET', `/api/me?api_key=${adminKey}&key=${unknownKey}`, { headers: admin }),
      200,
      'me query',
    );
    expectStatus(
      await c.req('GET', '/api/me', { headers: { authorization: `Bearer ${unknownKey}` } }),
      401,
      'unknown key',
    );
    expectStatus(
      await c.req('GET', '/api/me', { headers: { 'x-api-key': unknownKey } }),
      401,
      'unknown x-api-key',
    );
    expectStatus(
      await c.req('GET', '/api/me', { headers: { authorization: `Bearer ${unknownKey.slice(0, 30)}` } }),
      401,
      'short key',
    );
    expectStatus(
      await c.req('GET', '/api/me', {
        headers: { authorization: `Basic ${Buffer.from(`admin:${adminKey}`).toString('base64')}` },
      }),
      401,
      'basic',
    );
    const token = jwt.sign(
      { sub: 'idp|canary', aud: 'floodgate', email: 'canary@example.com', role: 'developer' },
      jwtSecret,
      {
        algorithm: 'HS256',
        expiresIn: 300,
      },
    );
    const forged = jwt.sign({ sub: 'idp|canary', aud: 'floodgate', role: 'admin' }, `${jwtSecret}x`, {
      expiresIn: 300,
    });
    canaries.push({ name: 'valid JWT', value: token }, { name: 'forged JWT', value: forged });
    canaries.push({ name: 'valid JWT signature', value: token.split('.')[2]! });
    expectStatus(
      await c.req('GET', '/api/me', { headers: { authorization: `Bearer ${token}` } }),
      200,
      'jwt',
    );
    expectStatus(
      await c.req('GET', '/api/me', { headers: { authorization: `Bearer ${forged}` } }),
      401,
      'forged jwt',
    );

    // ---- users and client keys -------------------------------------------------------------------
    const users: Record<string, string> = {};
    for (const role of ['developer', 'user', 'viewer']) {
      const r = await c.req('POST', '/api/admin/users', {
        headers: admin,
        body: { email: `${role}@canary.test`, role },
      });
      expectStatus(r, 201, `user ${role}`);
      users[role] = r.body.id;
    }
    expectStatus(await c.req('GET', '/api/admin/users', { headers: admin }), 200, 'users');
    expectStatus(await c.req('GET', `/api/admin/users/${users.user}`, { headers: admin }), 200, 'user');
    expectStatus(
      await c.req('PATCH', `/api/admin/users/${users.user}`, {
        headers: admin,
        body: { name: 'Canary User' },
      }),
      200,
      'patch user',
    );
    const keys: Record<string, { key: string; id: string }> = {};
    for (const [role, limits] of [
      ['developer', undefined],
      ['user', { rpm: 2 }],
      ['viewer', undefined],
    ] as const) {
      const r = await c.req('POST', `/api/admin/users/${users[role]}/keys`, {
        headers: admin,
        body: { name: `${role}-key`, ...(limits ? { limits } : {}) },
      });
      expectStatus(r, 201, `key ${role}`);
      keys[role] = { key: r.body.key, id: r.body.id };
      issuedIn.set(r.body.key, r.n);
    }
    const dev = { 'x-api-key': keys.developer!.key };
    const own = await c.req('POST', '/api/keys', { headers: dev, body: { name: 'own' } });
    expectStatus(own, 201, 'own key');
    issuedIn.set(own.body.key, own.n);
    expectStatus(await c.req('GET', '/api/keys', { headers: dev }), 200, 'own keys');
    expectStatus(
      await c.req('GET', '/api/admin/api-keys?include_revoked=true', { headers: admin }),
      200,
      'all keys',
    );
    expectStatus(await c.req('DELETE', `/api/keys/${own.body.id}`, { headers: dev }), 204, 'revoke own');
    expectStatus(
      await c.req('GET', '/api/me', { headers: { authorization: `Bearer ${own.body.key}` } }),
      401,
      'revoked key',
    );
    const doomed = await c.req('POST', `/api/admin/users/${users.viewer}/keys`, {
      headers: admin,
      body: { name: 'doomed' },
    });
    expectStatus(doomed, 201, 'doomed key');
    issuedIn.set(doomed.body.key, doomed.n);
    expectStatus(
      await c.req('DELETE', `/api/admin/api-keys/${doomed.body.id}`, { headers: admin }),
      204,
      'admin revoke',
    );
    for (const [value, n] of issuedIn)
      canaries.push({ name: `generated client key (response #${n})`, value });

    // ---- providers and upstream keys ---------------------------------------------------------------
    const provider = await c.req('POST', '/api/admin/providers', {
      headers: admin,
      body: { name: 'fake', base_url: fake.baseUrl, models: fake.models, timeout_ms: 5000 },
    });
    expectStatus(provider, 201, 'provider');
    const pid = provider.body.id as string;
    const upstream: Record<string, string> = {};
    for (const [label, key, priority] of [
      ['primary', prov.primary, 1],
      ['secondary', prov.secondary, 2],
      ['replaced', prov.replacedOld, 3],
    ] as const) {
      const r = await c.req('POST', `/api/admin/providers/${pid}/keys`, {
        headers: admin,
        body: { label, key, priority },
      });
      expectStatus(r, 201, `upstream key ${label}`);
      upstream[label] = r.body.id;
    }
    expectStatus(
      await c.req('PATCH', `/api/admin/provider-keys/${upstream.replaced}`, {
        headers: admin,
        body: { key: prov.replacedNew },
      }),
      200,
      'replace key value',
    );
    // A key value that fails validation must not be echoed in the 400 either.
    expectStatus(
      await c.req('POST', `/api/admin/providers/${pid}/keys`, {
        headers: admin,
        body: { label: 'bad', key: `${prov.deleted} x` },
      }),
      400,
      'bad key value',
    );
    const other = await c.req('POST', '/api/admin/providers', {
      headers: admin,
      body: {
        name: 'other',
        base_url: fake.baseUrl,
        models: ['other-model'],
        headers: { 'OpenAI-Organization': 'org-canary' },
      },
    });
    expectStatus(other, 201, 'other provider');
    expectStatus(
      await c.req('POST', `/api/admin/providers/${other.body.id}/keys`, {
        headers: admin,
        body: { label: 'x', key: prov.deleted },
      }),
      201,
      'deleted key',
    );
    expectStatus(
      await c.req('DELETE', `/api/admin/providers/${other.body.id}`, { headers: admin }),
      204,
      'delete provider',
    );
    expectStatus(await c.req('GET', '/api/admin/providers', { headers: admin }), 200, 'providers');
    expectStatus(await c.req('GET', `/api/admin/providers/${pid}`, { headers: admin }), 200, 'provider');
    expectStatus(
      await c.req('PATCH', `/api/admin/providers/${pid}`, { headers: admin, body: { rpm: 1000 } }),
      200,
      'patch provider',
    );
    expectStatus(
      await c.req('GET', `/api/admin/providers/${pid}/keys`, { headers: admin }),
      200,
      'upstream keys',
    );
    expectStatus(
      await c.req('GET', `/api/admin/provider-keys/${upstream.primary}`, { headers: admin }),
      200,
      'upstream key',
    );
    expectStatus(await c.req('POST', '/api/admin/provider-keys/heal', { headers: admin }), 200, 'heal');

    // ---- relay -------------------------------------------------------------------------------------
    const clientExtras = {
      cookie: `session=${clientCookie}`,
      'proxy-authorization': `Basic ${Buffer.from(`p:${proxyPassword}`).toString('base64')}`,
    };
    const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello canary' }] };
    expectStatus(await c.req('GET', '/v1/models', { headers: dev }), 200, 'models');
    expectStatus(await c.req('GET', '/v1/models/gpt-4o-mini', { headers: dev }), 200, 'model');
    expectStatus(
      await c.req('POST', '/v1/chat/completions', { headers: { ...dev, ...clientExtras }, body: chat }),
      200,
      'chat',
    );
    expectStatus(
      await c.req('POST', '/v1/chat/completions', {
        headers: { authorization: `Bearer ${keys.developer!.key}`, ...clientExtras },
        body: { ...chat, stream: true },
      }),
      200,
      'chat stream',
    );
    expectStatus(
      await c.req('POST', '/v1/completions', {
        headers: dev,
        body: { model: 'gpt-4o-mini', prompt: 'x', stream: true },
      }),
      200,
      'completions stream',
    );
    expectStatus(
      await c.req('POST', '/v1/embeddings', {
        headers: dev,
        body: { model: 'text-embedding-3-small', input: 'x' },
      }),
      200,
      'embeddings',
    );
    expectStatus(
      await c.req('POST', '/v1/chat/completions', {
        headers: { authorization: `Bearer ${token}` },
        body: chat,
      }),
      200,
      'chat via JWT',
    );
    // Upstream errors: 401 on the primary (→ retried on the secondary, primary marked invalid),
    // 429 (→ cooling), 500, a dropped connection, a 400 the client sees.
    fake.when({ key: prov.primary, times: 1, reply: FakeProvider.unauthorized() });
    expectStatus(
      await c.req('POST', '/v1/chat/completions', { headers: dev, body: chat }),
      200,
      'retry after 401',
    );
    fake.when({ times: 2, reply: FakeProvider.rateLimited(1) });
    const limited = await c.req('POST', '/v1/chat/completions', { headers: dev, body: chat });
    expect([200, 429], limited.text).toContain(limited.status);
    for (const id of Object.values(upstream))
      await c.req('PATCH', `/api/admin/provider-keys/${id}`, { headers: admin, body: { enabled: true } });
    fake.when({ times: 2, reply: FakeProvider.serverError(500) });
    expect(
      (await c.req('POST', '/v1/chat/completions', { headers: dev, body: chat })).status,
    ).toBeGreaterThanOrEqual(500);
    fake.when({ times: 2, reply: { destroy: true } });
    expect(
      (await c.req('POST', '/v1/chat/completions', { headers: dev, body: { ...chat, stream: true } })).status,
    ).toBeGreaterThanOrEqual(500);
    fake.when({
      times: 1,
      reply: {
        status: 400,
        body: { error: { message: 'bad request from upstream', type: 'invalid_request_error', code: 'bad' } },
      },
    });
    expectStatus(
      await c.req('POST', '/v1/chat/completions', { headers: dev, body: chat }),
      400,
      'upstream 400',
    );
    for (const id of Object.values(upstream))
      await c.req('PATCH', `/api/admin/provider-keys/${id}`, { headers: admin, body: { enabled: true } });
    expectStatus(
      await c.req('POST', '/v1/chat/completions', { headers: dev, body: { model: 'nope', messages: [] } }),
      400,
      'invalid body',
    );
    expectStatus(
      await c.req('POST', '/v1/chat/completions', { headers: { 'x-api-key': keys.viewer!.key }, body: chat }),
      403,
      'viewer relay',
    );
    // Client rate limit: the user key allows 2 requests per minute.
    const userKey = { authorization: `Bearer ${keys.user!.key}` };
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++)
      statuses.push((await c.req('GET', '/v1/models', { headers: userKey })).status);
    expect(statuses).toEqual([200, 200, 429]);

    // ---- rate limits, adaptive, status, metrics, audit ------------------------------------------
    expectStatus(
      await c.req('GET', `/api/admin/rate-limits/key:${keys.user!.id}`, { headers: admin }),
      200,
      'rl key',
    );
    expectStatus(
      await c.req('GET', `/api/admin/rate-limits/user:${users.user}`, { headers: admin }),
      200,
      'rl user',
    );
    expectStatus(await c.req('GET', '/api/admin/rate-limits/ip:127.0.0.1', { headers: admin }), 200, 'rl ip');
    expectStatus(
      await c.req('DELETE', `/api/admin/rate-limits/key:${keys.user!.id}`, { headers: admin }),
      204,
      'rl reset',
    );
    expectStatus(
      await c.req('GET', `/api/admin/adaptive/keys?provider_id=${pid}`, { headers: admin }),
      200,
      'adaptive keys',
    );
    expectStatus(
      await c.req('GET', `/api/admin/adaptive/keys/${upstream.primary}/stats`, { headers: admin }),
      200,
      'adaptive stats',
    );
    expectStatus(
      await c.req('PATCH', `/api/admin/adaptive/keys/${upstream.secondary}/mode`, {
        headers: admin,
        body: { enabled: false, fixed_limit: 5 },
      }),
      200,
      'adaptive mode',
    );
    expectStatus(
      await c.req('PATCH', `/api/admin/adaptive/keys/${upstream.secondary}/limit?limit=6`, {
        headers: admin,
      }),
      200,
      'adaptive limit',
    );
    expectStatus(
      await c.req('DELETE', `/api/admin/adaptive/keys/${upstream.primary}/learning`, { headers: admin }),
      200,
      'adaptive reset',
    );
    expectStatus(
      await c.req('GET', '/api/admin/adaptive/summary', { headers: admin }),
      200,
      'adaptive summary',
    );
    expectStatus(await c.req('GET', '/api/admin/status', { headers: admin }), 200, 'status');
    const stream = await c.req('GET', '/api/admin/status/stream', { headers: admin, sseMs: 1500 });
    expectStatus(stream, 200, 'status stream');
    expect(stream.text).toContain('data:');
    await new Promise((r) => setTimeout(r, 400)); // let the key-usage flush run once
    expectStatus(
      await c.req('GET', `/api/admin/provider-keys/${upstream.secondary}/usage?minutes=5`, {
        headers: admin,
      }),
      200,
      'usage',
    );
    const metrics = await c.req('GET', '/metrics', { headers: { authorization: `Bearer ${metricsToken}` } });
    expectStatus(metrics, 200, 'metrics');
    expect(metrics.text).toContain('floodgate_');
    const audit = await c.req('GET', '/api/admin/audit?limit=200', { headers: admin });
    expectStatus(audit, 200, 'audit');
    expect(audit.body.data.length).toBeGreaterThan(15);

    // ---- graceful stop: batched rows (request log, usage, last_used_at) are flushed ---------------
    gw.proc.kill('SIGTERM');
    const code = await Promise.race([gw.exited, new Promise((r) => setTimeout(() => r('timeout'), 20_000))]);
    expect(code, gw.output().slice(-2000)).toBe(0);

    // ---- collect -----------------------------------------------------------------------------------
    const haystacks: Haystack[] = [];
    const logText = gw.output();
    const logLines = logText.split('\n').filter((l) => l.trim() !== '');
    expect(logLines.length).toBeGreaterThan(c.responses.length);
    expect(logLines.filter((l) => l.includes('"level":20')).length, 'debug lines are on').toBeGreaterThan(0);
    haystacks.push({ source: 'process output (stdout + stderr)', text: logText });
    for (const r of c.responses)
      haystacks.push({
        source: `response #${r.n} ${r.label} → ${r.status}`,
        text: `${r.status}\n${r.headers}\n\n${r.body}`,
      });

    let dbText = '';
    if (mode === 'distributed') {
      const client = new pg.Client({ connectionString: env.DATABASE_URL });
      await client.connect();
      try {
        const dump = await tableDump((sql) => client.query(sql));
        haystacks.push(...dump);
        dbText = dump.map((d) => d.text).join('\n');
      } finally {
        await client.end();
      }
      haystacks.push(...(await redisDump(env.REDIS_PREFIX!)));
    } else {
      const db = new PGlite(join(dataDir!, 'pgdata'));
      try {
        const dump = await tableDump((sql) => db.query(sql));
        haystacks.push(...dump);
        dbText = dump.map((d) => d.text).join('\n');
      } finally {
        await db.close();
      }
      // Raw bytes of every file the run wrote (heap pages, WAL), for leftovers of deleted rows.
      for (const file of filesUnder(dataDir!)) {
        const st = statSync(file);
        if (st.mtimeMs >= startedAt - 1000 && st.size < 64 * 1024 * 1024)
          haystacks.push({
            source: `file ${file.slice(dataDir!.length)}`,
            text: readFileSync(file).toString('latin1'),
          });
      }
    }

    // ---- positive controls: the scan sees what it must -------------------------------------------
    // The database holds every key's SHA-256 (the only form of a client key it may hold) ...
    expect(dbText).toContain(sha256Hex(adminKey));
    expect(dbText).toContain(sha256Hex(keys.developer!.key));
    if (mode === 'embedded') {
      // The raw-file scan covers the pages the run wrote (a key created during the run is in them).
      const files = haystacks.filter((h) => h.source.startsWith('file '));
      expect(
        files.some((h) => h.text.includes(sha256Hex(keys.developer!.key))),
        'raw files hold the run',
      ).toBe(true);
    }
    // ... the upstream really received the provider canaries (so they did travel through the gateway) ...
    const upstreamSaw = JSON.stringify(fake.requests.map((r) => r.headers.authorization));
    expect(upstreamSaw).toContain(prov.primary);
    expect(upstreamSaw).toContain(prov.secondary);
    // ... the scanner finds every canary in each encoding ...
    for (const canary of canaries.slice(0, 3)) {
      for (const needle of needlesFor(canary)) {
        const probe = `xx${needle.text}yy`;
        expect(
          scanForCanaries([{ source: 'probe', text: probe }], [canary]).length,
          needle.encoding,
        ).toBeGreaterThan(0);
      }
      const embedded = Buffer.from(`Authorization: Basic x:${canary.value}`).toString('base64');
      expect(scanForCanaries([{ source: 'probe', text: embedded }], [canary]).length).toBeGreaterThan(0);
    }
    // ... a value that legitimately travels everywhere (a user's display name) is found in responses,
    // in the database dump and in the audit log, so a leaked canary would be too ...
    const control = scanForCanaries(haystacks, [{ name: 'control', value: 'Canary User' }]);
    expect(control.some((f) => f.source.startsWith('response #'))).toBe(true);
    expect(control.some((f) => f.source.startsWith('db ') && f.source.includes('users'))).toBe(true);
    expect(control.some((f) => f.source.startsWith('db ') && f.source.includes('audit'))).toBe(true);
    // ... and each generated key is in its creation response (allowed) — and nowhere else.
    for (const [value, n] of issuedIn) expect(c.responses[n]!.body).toContain(value);

    // ---- the scan ----------------------------------------------------------------------------------
    const allowed = (source: string, canary: Canary): boolean => {
      const m = /^generated client key \(response #(\d+)\)$/.exec(canary.name);
      return m !== null && source.startsWith(`response #${m[1]} `);
    };
    const scanStarted = Date.now();
    const findings = scanForCanaries(haystacks, canaries, allowed);
    const scanMs = Date.now() - scanStarted;
    const scannedMb = haystacks.reduce((a, h) => a + h.text.length, 0) / 1e6;
    console.log(
      `canary scan (${mode}): ${haystacks.length} haystacks, ${scannedMb.toFixed(1)} MB, ${scanMs} ms`,
    );
    expect(
      findings.map((f) => `${f.canary} [${f.encoding}] in ${f.source}: …${f.context}…`),
      `${haystacks.length} haystacks scanned`,
    ).toEqual([]);
  });
});
