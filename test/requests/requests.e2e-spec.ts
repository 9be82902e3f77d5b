/**
 * The requests API (docs/requests.md) end to end, in both modes: rows the relay logs show up with
 * their tokens and cost; every filter; keyset pages with rows arriving between pages; the 400s, the
 * 404s and the 403s; a team_admin's own-team view; body capture (per key, per route; redacted,
 * capped; off stores nothing) and the retention job.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { RequestLogWriter } from '../../src/relay/infrastructure/request-log.writer.js';
import { BodyRetentionService } from '../../src/requests/services/body-retention.service.js';
import { bearer, createUserWithKey, type UserWithKey } from '../support/auth.js';
import { pollUntil } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, MODES } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';

const PRICE = { input_per_mtok: 1.5, output_per_mtok: 6, cached_input_per_mtok: 0.75 };
const MAX_BYTES = 1024;
const SECRET = `sk-proj-${'S3cr3t'.repeat(6)}`;
const FG_SECRET = `fg_${'A'.repeat(43)}`;

interface Row {
  id: string;
  request_id: string;
  endpoint: string;
  created_at: string;
  model: string | null;
  served_model: string | null;
  status: number;
  outcome: string;
  error_code: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cost_usd: number | null;
  provider_id: string | null;
  provider_name: string | null;
  provider_key_id: string | null;
  api_key_id: string | null;
  user_id: string | null;
  team_id: string | null;
  route_id: string | null;
  stream: boolean;
  priority: string;
}

describe.each(MODES)('requests API (%s)', (mode) => {
  let fx: RelayFixture;
  let writer: RequestLogWriter;
  let db: DataSource;
  let teamId: string;
  let alice: UserWithKey; // user, member of the team
  let carol: UserWithKey; // user, the team's team_admin
  let bob: UserWithKey; // developer, no team
  let snoop: UserWithKey; // capture on its key
  let provider2: string;
  /** request_id → the x-request-id sent, for every request made here. */
  const sent: { requestId: string; key: string; model: string; status: number }[] = [];

  const api = (path: string, key = fx.adminKey) =>
    getJson(`${fx.gw.url}${path}`, { headers: bearer(key, false) });

  const relay = async (
    key: string,
    body: Record<string, unknown>,
    path = '/v1/chat/completions',
  ): Promise<{ status: number; requestId: string; body: any }> => {
    const requestId = `rq-${randomUUID()}`;
    const res = await fetch(`${fx.gw.url}${path}`, {
      method: 'POST',
      headers: { ...bearer(key), 'x-request-id': requestId },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // SSE text
    }
    sent.push({ requestId, key, model: String(body.model), status: res.status });
    return { status: res.status, requestId, body: parsed };
  };

  const chat = (key: string, model = 'gpt-4o-mini', content = 'hello there') =>
    relay(key, { model, messages: [{ role: 'user', content }] });

  /** The account runs after the answer is sent: wait until every request made so far has its row. */
  const flush = async () => {
    const ids = sent.map((s) => s.requestId);
    await pollUntil(
      async () => {
        await writer.flush();
        const rows = (await db.query(
          'SELECT count(*)::int AS n FROM request_log WHERE request_id = ANY($1)',
          [ids],
        )) as { n: number }[];
        return Number(rows[0]!.n) === ids.length;
      },
      { timeoutMs: 10_000, what: 'every request in the request log' },
    );
  };

  const all = async (query = ''): Promise<Row[]> => {
    const res = await api(`/api/admin/requests?limit=500${query}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.next_cursor).toBeNull();
    return res.body.data as Row[];
  };

  const rowOf = async (requestId: string): Promise<Row> => {
    const row = (await all()).find((r) => r.request_id === requestId);
    expect(row, `row of ${requestId}`).toBeDefined();
    return row!;
  };

  beforeAll(async () => {
    fx = await startRelay(mode, {
      env: {
        RATE_LIMIT_KEY_RPM: '100000',
        RATE_LIMIT_USER_RPM: '100000',
        BODY_CAPTURE_MAX_BYTES: String(MAX_BYTES),
      },
      provider: { models: ['gpt-4o-mini'], pricing: { 'gpt-4o-mini': PRICE } },
    });
    writer = fx.gw.app.get(RequestLogWriter);
    db = fx.gw.app.get(DataSource);
    const p2 = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/providers', {
      name: 'second',
      base_url: fx.fake.baseUrl,
      models: ['gpt-4o'],
      timeout_ms: 5000,
    });
    expect(p2.status).toBe(201);
    provider2 = p2.body.id;
    expect(
      (
        await adminCall(fx.gw, fx.adminKey, 'POST', `/api/admin/providers/${provider2}/keys`, {
          label: 'k',
          key: 'sk-fake-2',
        })
      ).status,
    ).toBe(201);
    const team = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/teams', {
      name: `t-${randomUUID().slice(0, 8)}`,
    });
    expect(team.status).toBe(201);
    teamId = team.body.id;
    alice = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    carol = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    bob = await createUserWithKey(fx.gw, fx.adminKey, 'developer');
    snoop = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
      key: { capture_bodies: true } as Record<string, unknown>,
    });
    for (const [u, role] of [
      [alice, 'member'],
      [carol, 'team_admin'],
    ] as const) {
      const joined = await adminCall(
        fx.gw,
        fx.adminKey,
        'POST',
        `/api/admin/teams/${teamId}/members/${u.user.id}`,
        { role },
      );
      expect(joined.status).toBe(201);
    }
    // The fake fails any chat whose content is "fail" (the relay retries once, then answers 502).
    fx.fake.when({
      path: '/v1/chat/completions',
      reply: (req) =>
        req.body?.messages?.[0]?.content === 'fail' ? FakeProvider.serverError(500) : undefined,
    });
    // The traffic every test reads: alice ×4 (team), bob ×3 on the second provider, a 400, a 502.
    for (let i = 0; i < 4; i++) expect((await chat(alice.key)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await chat(bob.key, 'gpt-4o')).status).toBe(200);
    expect((await relay(alice.key, { model: 'gpt-4o-mini' })).status).toBe(400);
    expect((await chat(bob.key, 'gpt-4o-mini', 'fail')).status).toBe(502);
    await flush();
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('every relayed request has a row with its tokens, cost, provider, key, user and team', async () => {
    const rows = await all();
    for (const s of sent) expect(rows.map((r) => r.request_id)).toContain(s.requestId);
    const ok = await rowOf(sent[0]!.requestId);
    const usage = ok.prompt_tokens;
    expect(usage).toBeGreaterThan(0);
    expect(ok).toMatchObject({
      model: 'gpt-4o-mini',
      served_model: 'gpt-4o-mini',
      status: 200,
      outcome: 'ok',
      error_code: null,
      provider_id: fx.providerId,
      provider_name: 'fake',
      api_key_id: alice.keyId,
      user_id: alice.user.id,
      team_id: teamId,
      route_id: null,
      stream: false,
      priority: 'normal',
      total_tokens: ok.prompt_tokens + ok.completion_tokens,
    });
    const micros = Math.round((ok.prompt_tokens * 1_500_000 + ok.completion_tokens * 6_000_000) / 1_000_000);
    expect(Math.round(ok.cost_usd! * 1_000_000)).toBe(micros);
    expect(ok.provider_key_id).toBe(fx.keyIds['sk-fake-1']);
    // the 400 never reached a provider: no cost; the 502 names its error
    const bad = await rowOf(sent[7]!.requestId);
    expect(bad).toMatchObject({ status: 400, outcome: 'client_error', provider_id: null, cost_usd: null });
    expect(bad.error_code).toBeTruthy();
    const failed = await rowOf(sent[8]!.requestId);
    expect(failed).toMatchObject({ status: 502, outcome: 'error', user_id: bob.user.id, team_id: null });
    // newest first
    const times = rows.map((r) => Date.parse(r.created_at));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
  });

  it('filters: key_id, user_id, team_id, model, provider_id, status (code and class), from/to', async () => {
    const rows = await all();
    const ids = (list: Row[]) => list.map((r) => r.id);
    const check = async (query: string, keep: (r: Row) => boolean, atLeast: number) => {
      const got = await all(query);
      expect(ids(got), query).toEqual(ids(rows.filter(keep)));
      expect(got.length, query).toBeGreaterThanOrEqual(atLeast);
    };
    await check(`&key_id=${alice.keyId}`, (r) => r.api_key_id === alice.keyId, 5);
    await check(`&user_id=${bob.user.id}`, (r) => r.user_id === bob.user.id, 4);
    await check(`&team_id=${teamId}`, (r) => r.team_id === teamId, 5);
    await check('&model=gpt-4o', (r) => r.model === 'gpt-4o', 3);
    await check(`&provider_id=${provider2}`, (r) => r.provider_id === provider2, 3);
    await check('&status=400', (r) => r.status === 400, 1);
    await check('&status=2xx', (r) => r.status >= 200 && r.status < 300, 7);
    await check('&status=4xx', (r) => r.status >= 400 && r.status < 500, 1);
    await check('&status=5xx', (r) => r.status >= 500, 1);
    await check(
      `&status=200&key_id=${alice.keyId}`,
      (r) => r.status === 200 && r.api_key_id === alice.keyId,
      4,
    );
    const mid = rows[Math.floor(rows.length / 2)]!.created_at;
    await check(`&from=${encodeURIComponent(mid)}`, (r) => Date.parse(r.created_at) >= Date.parse(mid), 1);
    await check(`&to=${encodeURIComponent(mid)}`, (r) => Date.parse(r.created_at) < Date.parse(mid), 1);
    expect(await all('&from=2000-01-01&to=2000-01-02')).toEqual([]);
  });

  it('pages: limit 3 walks every row once, newest first, even with rows written between pages', async () => {
    const snapshot = (await all()).map((r) => r.id);
    expect(snapshot.length).toBeGreaterThan(6);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await api(`/api/admin/requests?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(3);
      seen.push(...(res.body.data as Row[]).map((r) => r.id));
      cursor = res.body.next_cursor;
      if (pages === 0) {
        // new rows arrive after the first page: newer, so they never shift or repeat later pages
        expect((await chat(alice.key)).status).toBe(200);
        await flush();
      }
      pages++;
    } while (cursor !== null && pages < 100);
    expect(pages).toBeGreaterThan(2);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(snapshot);
    // default limit 50
    const first = await api('/api/admin/requests');
    expect(first.body.data.length).toBe(Math.min(50, snapshot.length + 1));
  });

  it('one request: its attempts (from the row when no attempt log was kept); 404 for unknown ids', async () => {
    const row = await rowOf(sent[0]!.requestId);
    const res = await api(`/api/admin/requests/${row.id}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      ...row,
      request_body: null,
      response_body: null,
      body_truncated: false,
    });
    expect(res.body.attempts).toEqual([
      {
        attempt: 1,
        provider_id: fx.providerId,
        provider_name: 'fake',
        model: 'gpt-4o-mini',
        provider_key_id: fx.keyIds['sk-fake-1'],
        status: 200,
        outcome: 'ok',
        ms: expect.any(Number),
      },
    ]);
    // the 502: at least its one attempt on the provider
    const failed = await api(`/api/admin/requests/${(await rowOf(sent[8]!.requestId)).id}`);
    expect(failed.body.attempts.length).toBeGreaterThanOrEqual(1);
    expect(failed.body.attempts[0]).toMatchObject({ attempt: 1, provider_name: 'fake' });
    // never reached a provider: no attempts
    expect((await api(`/api/admin/requests/${(await rowOf(sent[7]!.requestId)).id}`)).body.attempts).toEqual(
      [],
    );
    for (const id of [randomUUID(), 'not-a-uuid']) {
      const missing = await api(`/api/admin/requests/${id}`);
      expect(missing.status).toBe(404);
      expect(missing.body.error).toMatchObject({
        type: 'invalid_request_error',
        code: 'not_found',
        param: 'id',
      });
      expect(missing.body.error.request_id).toBeTruthy();
    }
  });

  it('filter endpoint: chat vs embeddings rows (each row names its endpoint)', async () => {
    const emb = await relay(bob.key, { model: 'gpt-4o-mini', input: 'hello' }, '/v1/embeddings');
    expect(emb.status).toBe(200);
    await flush();
    const rows = await all();
    expect((await rowOf(emb.requestId)).endpoint).toBe('embeddings');
    expect((await rowOf(sent[0]!.requestId)).endpoint).toBe('chat');
    const embeddings = await all('&endpoint=embeddings');
    expect(embeddings.map((r) => r.id)).toEqual(
      rows.filter((r) => r.endpoint === 'embeddings').map((r) => r.id),
    );
    expect(embeddings.map((r) => r.request_id)).toContain(emb.requestId);
    const chats = await all(`&endpoint=chat&user_id=${bob.user.id}`);
    expect(chats.length).toBeGreaterThanOrEqual(4);
    expect(chats.every((r) => r.endpoint === 'chat' && r.user_id === bob.user.id)).toBe(true);
    expect(chats.map((r) => r.request_id)).not.toContain(emb.requestId);
    expect(await all('&endpoint=messages')).toEqual([]);
  });

  it.each([
    ['key_id', 'nope'],
    ['user_id', '42'],
    ['team_id', 'x'],
    ['provider_id', 'x'],
    ['endpoint', 'chat.completions'],
    ['endpoint', 'images'],
    ['status', '6xx'],
    ['status', 'abc'],
    ['from', 'yesterday'],
    ['to', '2026-12-01T10:00:00'],
    ['cursor', 'bm90LWEtY3Vyc29y'],
    ['limit', '0'],
    ['limit', '501'],
    ['limit', 'ten'],
    ['unknown_param', '1'],
  ])('400 naming %s (%s)', async (param, value) => {
    const res = await api(`/api/admin/requests?${param}=${encodeURIComponent(value)}`);
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param });
  });

  it('400 when from is not before to', async () => {
    const res = await api('/api/admin/requests?from=2026-12-02&to=2026-12-01');
    expect(res.status).toBe(400);
    expect(res.body.error.param).toBe('from');
  });

  it('403 for a developer or a plain member; 401 without credentials', async () => {
    for (const key of [bob.key, alice.key]) {
      const res = await api('/api/admin/requests', key);
      expect(res.status).toBe(403);
      expect(res.body.error.type).toBe('permission_error');
      expect((await api(`/api/admin/requests/${randomUUID()}`, key)).status).toBe(403);
    }
    expect((await fetch(`${fx.gw.url}/api/admin/requests`)).status).toBe(401);
  });

  it("a team_admin sees its own team's rows only", async () => {
    const rows = await all();
    const mine = rows.filter((r) => r.team_id === teamId).map((r) => r.id);
    const res = await api('/api/admin/requests?limit=500', carol.key);
    expect(res.status).toBe(200);
    expect((res.body.data as Row[]).map((r) => r.id)).toEqual(mine);
    expect((await api(`/api/admin/requests?team_id=${teamId}&limit=500`, carol.key)).body.data.length).toBe(
      mine.length,
    );
    const other = await api(`/api/admin/requests?team_id=${randomUUID()}`, carol.key);
    expect(other.status).toBe(403);
    const own = rows.find((r) => r.team_id === teamId)!;
    expect((await api(`/api/admin/requests/${own.id}`, carol.key)).status).toBe(200);
    const foreign = rows.find((r) => r.team_id === null)!;
    expect((await api(`/api/admin/requests/${foreign.id}`, carol.key)).status).toBe(404);
  });

  it('capture on a key: both bodies stored, secrets redacted, capped; off: nothing stored', async () => {
    const content = `my keys: ${SECRET} and ${FG_SECRET}; header x-api-key: hunter2hunter2`;
    const captured = await chat(snoop.key, 'gpt-4o-mini', content);
    expect(captured.status).toBe(200);
    const big = await chat(snoop.key, 'gpt-4o-mini', `${'long '.repeat(400)}${SECRET}`);
    expect(big.status).toBe(200);
    const streamed = await relay(snoop.key, {
      model: 'gpt-4o-mini',
      stream: true,
      messages: [{ role: 'user', content: 'stream me' }],
    });
    expect(streamed.status).toBe(200);
    await flush();

    const detail = async (requestId: string) =>
      (await api(`/api/admin/requests/${(await rowOf(requestId)).id}`)).body;
    const one = await detail(captured.requestId);
    expect(one.request_body).toContain('[REDACTED]');
    for (const secret of [SECRET, FG_SECRET, 'hunter2hunter2'])
      expect(one.request_body).not.toContain(secret);
    expect(JSON.parse(one.request_body).model).toBe('gpt-4o-mini');
    expect(JSON.parse(one.response_body).choices[0].message.content).toBe(
      captured.body.choices[0].message.content,
    );
    expect(one.body_truncated).toBe(false);

    const cut = await detail(big.requestId);
    expect(cut.body_truncated).toBe(true);
    expect(Buffer.byteLength(cut.request_body)).toBeLessThanOrEqual(MAX_BYTES);
    expect(cut.request_body).not.toContain('sk-proj');

    const sse = await detail(streamed.requestId);
    expect(sse.stream).toBe(true);
    // the SSE text as relayed, cut at the cap
    expect(sse.response_body).toContain('data: ');
    expect((streamed.body as string).startsWith(sse.response_body as string)).toBe(true);
    expect(sse.body_truncated).toBe(Buffer.byteLength(streamed.body as string) > MAX_BYTES);

    // off (alice's key, no route capture): no request_bodies row for any of her requests
    const aliceIds = (await all(`&key_id=${alice.keyId}`)).map((r) => r.id);
    const stored = (await db.query(
      'SELECT count(*)::int AS n FROM request_bodies WHERE request_id = ANY($1::uuid[])',
      [aliceIds],
    )) as { n: number }[];
    expect(Number(stored[0]!.n)).toBe(0);
    expect((await detail(sent[0]!.requestId)).request_body).toBeNull();
  });

  it('only an admin may turn capture on for a key', async () => {
    const res = await getJson(`${fx.gw.url}/api/keys`, {
      method: 'POST',
      headers: bob.jsonHeaders,
      body: JSON.stringify({ name: 'spy', capture_bodies: true }),
    });
    expect(res.status).toBe(403);
    expect(res.body.error.param).toBe('capture_bodies');
    const listed = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/api-keys?user_id=${snoop.user.id}`);
    expect(listed.body.data[0].capture_bodies).toBe(true);
  });

  it('capture on a route: its requests are captured whatever the key', async () => {
    const alias = `captured-${randomUUID().slice(0, 8)}`;
    const route = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/routes', {
      model: alias,
      targets: [{ provider_id: fx.providerId, model: 'gpt-4o-mini' }],
      capture_bodies: true,
    });
    expect(route.status, JSON.stringify(route.body)).toBe(201);
    expect(route.body.capture_bodies).toBe(true);
    const res = await chat(alice.key, alias, `route ${SECRET}`);
    expect(res.status).toBe(200);
    await flush();
    const row = await rowOf(res.requestId);
    expect(row).toMatchObject({ model: alias, served_model: 'gpt-4o-mini', route_id: route.body.id });
    const detail = (await api(`/api/admin/requests/${row.id}`)).body;
    expect(detail.request_body).toContain(alias);
    expect(detail.request_body).not.toContain(SECRET);
    expect(detail.response_body).toContain(`"model":"${alias}"`);
    expect(detail.attempts).toHaveLength(1);
    // patched off: no longer captured
    const off = await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/routes/${route.body.id}`, {
      capture_bodies: false,
    });
    expect(off.body.capture_bodies).toBe(false);
    const after = await chat(alice.key, alias);
    await flush();
    expect(
      (await api(`/api/admin/requests/${(await rowOf(after.requestId)).id}`)).body.request_body,
    ).toBeNull();
  });

  it('retention: bodies older than BODY_CAPTURE_RETENTION_DAYS are deleted, newer ones kept', async () => {
    const old = randomUUID();
    const fresh = randomUUID();
    await db.query(
      `INSERT INTO request_bodies (request_id, request_body, response_body, truncated, created_at)
       VALUES ($1, 'old', 'old', false, now() - interval '8 days'), ($2, 'new', 'new', false, now() - interval '6 days')`,
      [old, fresh],
    );
    const deleted = await fx.gw.app.get(BodyRetentionService).sweep();
    expect(deleted).toBeGreaterThanOrEqual(1);
    const left = (await db.query('SELECT request_id FROM request_bodies WHERE request_id = ANY($1::uuid[])', [
      [old, fresh],
    ])) as { request_id: string }[];
    expect(left.map((r) => r.request_id)).toEqual([fresh]);
  });
});
