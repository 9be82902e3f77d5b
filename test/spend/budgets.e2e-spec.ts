import { createHmac, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RequestLogWriter } from '../../src/relay/infrastructure/request-log.writer.js';
import { Receiver } from '../alerts/receiver.js';
import { bearer, createUserWithKey, newApiKey } from '../support/auth.js';
import { addProvider, chat, dropClientConnections, pollUntil, startInstance } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, MODES, startGateways, type TestGateway } from '../support/gateway.js';
import { OwnRedisCluster } from '../support/redis-cluster.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';
import { createTestDatabase, uniqueName } from '../support/services.js';

/**
 * Spend budgets end to end (docs/spend.md "Budgets"). The fake provider answers every chat with 5
 * completion tokens ("Hello from the fake provider."); the provider prices output at 10 USD/Mtok
 * (10 µ$ a token) and input at 0, and every request sends max_tokens 5: its worst-case reservation
 * (5 × 10 µ$ + the prompt estimate × 0) equals its settled cost, COST = 50 µ$. A budget of N × COST
 * then allows exactly N requests, whether they come one after another or all at once.
 */
const PRICE = { input_per_mtok: 0, output_per_mtok: 10, cached_input_per_mtok: 0 };
const COMPLETION_TOKENS = 5;
const COST = COMPLETION_TOKENS * 10; // µ$
const usd = (micros: number) => micros / 1_000_000;
const micros = (usdValue: number) => Math.round(usdValue * 1_000_000);

async function ask(url: string, key: string, tag: string = randomUUID()) {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: bearer(key),
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      max_tokens: COMPLETION_TOKENS,
      messages: [{ role: 'user', content: tag }],
    }),
  });
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body, retryAfter: res.headers.get('retry-after') };
}

const RESERVATION_TTL_MS = 2000;
/** A call without a body (no content-type: a DELETE with one and no body is a 400). */
const call = (url: string, key: string, method: string, path: string) =>
  getJson(`${url}${path}`, { method, headers: bearer(key, false) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Seconds from now to the next UTC midnight (a day budget's reset). */
const toMidnight = () => {
  const now = Date.now();
  return Math.ceil((Math.floor(now / 86_400_000 + 1) * 86_400_000 - now) / 1000);
};

describe.each(MODES)('budgets, one instance (%s)', (mode) => {
  let fx: RelayFixture;

  beforeAll(async () => {
    fx = await startRelay(mode, {
      // short reservation TTL (renewed every ~670 ms): the admin API test below outlives it
      env: {
        RATE_LIMIT_KEY_RPM: '100000',
        RATE_LIMIT_USER_RPM: '100000',
        BUDGET_RESERVATION_TTL_MS: String(RESERVATION_TTL_MS),
      },
      provider: { pricing: { 'gpt-4o-mini': PRICE }, timeout_ms: 30_000 },
    });
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('budget on create / GET / PATCH (keys, users, teams); a bad budget is a 400 naming the field', async () => {
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
      key: { budget: { limit_usd: 1.5, period: 'week' } } as never,
    });
    const keys = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/api-keys?user_id=${u.user.id}`);
    expect(keys.status).toBe(200);
    expect(keys.body.data[0].budget).toEqual({ limit_usd: 1.5, period: 'week' });
    const patched = await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/users/${u.user.id}`, {
      budget: { limit_usd: 0.000001, period: 'total' },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.budget).toEqual({ limit_usd: 0.000001, period: 'total' });
    const cleared = await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/users/${u.user.id}`, {
      budget: null,
    });
    expect(cleared.body.budget).toBeNull();
    for (const [budget, param] of [
      [{ limit_usd: 1, period: 'year' }, 'budget.period'],
      [{ limit_usd: 0.0000001, period: 'day' }, 'budget.limit_usd'],
      [{ limit_usd: -1, period: 'day' }, 'budget.limit_usd'],
      [{ period: 'day' }, 'budget.limit_usd'],
    ] as const) {
      const r = await adminCall(fx.gw, fx.adminKey, 'POST', `/api/admin/users/${u.user.id}/keys`, {
        name: 'bad',
        budget,
      });
      expect(r.status, JSON.stringify(budget)).toBe(400);
      expect(r.body.error.param, JSON.stringify(budget)).toBe(param);
    }
    const team = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/teams', {
      name: `t-${randomUUID().slice(0, 8)}`,
      budget: { limit_usd: 2, period: 'month' },
    });
    expect(team.status).toBe(201);
    expect(team.body.budget).toEqual({ limit_usd: 2, period: 'month', enforced: true });
  });

  it('a key budget of N × cost: N requests served, then 429 budget_exceeded with Retry-After to UTC midnight', async () => {
    const N = 3;
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
      key: { budget: { limit_usd: usd(N * COST), period: 'day' } } as never,
    });
    for (let i = 0; i < N; i++) {
      const r = await ask(fx.gw.url, u.key);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.usage.completion_tokens).toBe(COMPLETION_TOKENS);
    }
    const refused = await ask(fx.gw.url, u.key);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('budget_exceeded');
    expect(refused.body.error.message).toMatch(/API key .*day budget/);
    const wait = Number(refused.retryAfter);
    expect(Math.abs(wait - toMidnight())).toBeLessThanOrEqual(2);
    // nothing else was charged: the key's rpm counter did not count the refusal
    const upstreamBefore = fx.fake.requests.length;
    expect((await ask(fx.gw.url, u.key)).status).toBe(429);
    expect(fx.fake.requests.length).toBe(upstreamBefore);
  });

  it('streams settle to their counted usage too: N streamed answers, then 429', async () => {
    const N = 2;
    // max_tokens 50 reserves 10 × the cost: only the settlement to the actual 5 tokens lets N through
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
      key: { budget: { limit_usd: usd(N * COST + 9 * COST), period: 'day' } } as never,
    });
    const stream = async () => {
      const res = await fetch(`${fx.gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: bearer(u.key),
        body: JSON.stringify({
          model: 'gpt-4o-mini',
          stream: true,
          max_tokens: 10 * COMPLETION_TOKENS,
          messages: [{ role: 'user', content: 'stream me' }],
        }),
      });
      await res.text();
      return res.status;
    };
    // each reserves 10 × COST and settles to COST: after N, N × COST spent, 9 × COST left < 10 × COST
    for (let i = 0; i < N; i++) expect(await stream()).toBe(200);
    expect(await stream()).toBe(429);
  });

  it('user and team budgets: the tightest of key, user and team applies; `total` has no Retry-After', async () => {
    // user budget 2 × cost (total), key budget 10 × cost: the user's applies
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
      key: { budget: { limit_usd: usd(10 * COST), period: 'day' } } as never,
    });
    await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/users/${u.user.id}`, {
      budget: { limit_usd: usd(2 * COST), period: 'total' },
    });
    for (let i = 0; i < 2; i++) expect((await ask(fx.gw.url, u.key)).status).toBe(200);
    const refused = await ask(fx.gw.url, u.key);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('budget_exceeded');
    expect(refused.body.error.message).toMatch(/user .*total budget/);
    expect(refused.retryAfter).toBeNull();

    // a team of two users with a month budget of 3 × cost shared by both
    const team = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/teams', {
      name: `t-${randomUUID().slice(0, 8)}`,
      budget: { limit_usd: usd(3 * COST), period: 'month' },
    });
    const a = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    const b = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    for (const m of [a, b]) {
      const r = await adminCall(
        fx.gw,
        fx.adminKey,
        'POST',
        `/api/admin/teams/${team.body.id}/members/${m.user.id}`,
        {},
      );
      expect(r.status, JSON.stringify(r.body)).toBeLessThan(300);
    }
    // membership reaches the cached credentials through an invalidation: wait for the team to apply
    expect((await ask(fx.gw.url, a.key)).status).toBe(200);
    expect((await ask(fx.gw.url, b.key)).status).toBe(200);
    expect((await ask(fx.gw.url, a.key)).status).toBe(200);
    const over = await ask(fx.gw.url, b.key);
    expect(over.status).toBe(429);
    expect(over.body.error.code).toBe('budget_exceeded');
    expect(over.body.error.message).toMatch(/team .*month budget/);
    expect(Number(over.retryAfter)).toBeGreaterThan(0);
  });

  it('admin API: GET shows the reservation of a request in flight — kept past its TTL while the request lives (renewed) — then the settled spend; DELETE resets it (audited)', async () => {
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
      key: { budget: { limit_usd: usd(COST), period: 'day' } } as never,
    });
    const subject = `key:${u.keyId}`;
    const get = () => call(fx.gw.url, fx.adminKey, 'GET', `/api/admin/budgets/${subject}`);
    const fresh = await get();
    expect(fresh.status, JSON.stringify(fresh.body)).toBe(200);
    const today = new Date().toISOString().slice(0, 10);
    expect(fresh.body).toEqual({
      subject,
      limit_usd: usd(COST),
      period: 'day',
      period_id: `d${today}`,
      reset_at: new Date((Math.floor(Date.now() / 86_400_000) + 1) * 86_400_000).toISOString(),
      spent_usd: 0,
      reserved_usd: 0,
      remaining_usd: usd(COST),
      reservations: 0,
    });
    // a slow answer (3 reservation TTLs long) holds the whole budget while it runs
    const tag = `slow-${randomUUID()}`;
    fx.fake.when({
      reply: (req) => (req.body?.messages?.[0]?.content === tag ? { delayMs: 3 * RESERVATION_TTL_MS } : {}),
    });
    const slow = ask(fx.gw.url, u.key, tag);
    await pollUntil(async () => (await get()).body.reservations === 1, {
      timeoutMs: 10_000,
      what: 'the slow request reserved',
    });
    await sleep(RESERVATION_TTL_MS + 500);
    const held = await get();
    expect(held.body).toMatchObject({
      spent_usd: 0,
      reserved_usd: usd(COST),
      remaining_usd: 0,
      reservations: 1,
    });
    const refused = await ask(fx.gw.url, u.key);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('budget_exceeded');
    expect((await slow).status).toBe(200);
    await pollUntil(async () => (await get()).body.reservations === 0, {
      timeoutMs: 10_000,
      what: 'settled',
    });
    expect((await get()).body).toMatchObject({ spent_usd: usd(COST), reserved_usd: 0, remaining_usd: 0 });
    expect((await ask(fx.gw.url, u.key)).status).toBe(429);

    const reset = await call(fx.gw.url, fx.adminKey, 'DELETE', `/api/admin/budgets/${subject}`);
    expect(reset.status, JSON.stringify(reset.body)).toBe(204);
    expect((await get()).body).toMatchObject({ spent_usd: 0, reserved_usd: 0, remaining_usd: usd(COST) });
    expect((await ask(fx.gw.url, u.key)).status).toBe(200);
    const audit = await adminCall(fx.gw, fx.adminKey, 'GET', '/api/admin/audit?action=budget.reset');
    expect(audit.status).toBe(200);
    expect(audit.body.data.some((r: { target_id: string }) => r.target_id === subject)).toBe(true);

    // users and teams too
    const team = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/teams', {
      name: `t-${randomUUID().slice(0, 8)}`,
      budget: { limit_usd: 2, period: 'total' },
    });
    const t = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/budgets/team:${team.body.id}`);
    expect(t.status).toBe(200);
    expect(t.body).toMatchObject({ period: 'total', period_id: 'total', reset_at: null, limit_usd: 2 });
  });

  it('admin API errors: 400 naming `subject`, 404 for an unknown subject or one without a budget, 403 for a non-admin', async () => {
    for (const bad of ['key:nope', 'ip:203.0.113.7', 'team', 'user:12345678']) {
      for (const method of ['GET', 'DELETE']) {
        const r = await call(fx.gw.url, fx.adminKey, method, `/api/admin/budgets/${encodeURIComponent(bad)}`);
        expect(r.status, `${method} ${bad}`).toBe(400);
        expect(r.body.error.type).toBe('invalid_request_error');
        expect(r.body.error.param, `${method} ${bad}`).toBe('subject');
      }
    }
    const unknown = randomUUID();
    for (const [kind, code] of [
      ['key', 'api_key_not_found'],
      ['user', 'user_not_found'],
      ['team', 'team_not_found'],
    ]) {
      for (const method of ['GET', 'DELETE']) {
        const r = await call(fx.gw.url, fx.adminKey, method, `/api/admin/budgets/${kind}:${unknown}`);
        expect(r.status, `${method} ${kind}`).toBe(404);
        expect(r.body.error.code).toBe(code);
        expect(r.body.error.param).toBe('subject');
      }
    }
    const plain = await createUserWithKey(fx.gw, fx.adminKey, 'developer');
    const none = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/budgets/user:${plain.user.id}`);
    expect(none.status).toBe(404);
    expect(none.body.error.code).toBe('budget_not_found');
    // a subject without a budget can still be reset (its counters may be left from before)
    expect(
      (await call(fx.gw.url, fx.adminKey, 'DELETE', `/api/admin/budgets/user:${plain.user.id}`)).status,
    ).toBe(204);
    for (const method of ['GET', 'DELETE']) {
      const r = await call(fx.gw.url, plain.key, method, `/api/admin/budgets/user:${plain.user.id}`);
      expect(r.status, method).toBe(403);
      expect(r.body.error.type).toBe('permission_error');
    }
  });

  it('a webhook receiver on 127.0.0.1 gets a correctly signed budget.threshold at 80 %, once', async () => {
    const receiver = await Receiver.start();
    try {
      const secret = 'budget-secret-0123456789abcdef';
      const hook = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/webhooks', {
        url: receiver.url,
        events: ['budget.threshold'],
        secret,
      });
      expect(hook.status, JSON.stringify(hook.body)).toBe(201);
      const u = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
        key: { budget: { limit_usd: usd(5 * COST), period: 'day' } } as never,
      });
      // 4 of 5: 20, 40, 60 (→ 50 %), 80 % (→ 80 %)
      for (let i = 0; i < 4; i++) expect((await ask(fx.gw.url, u.key)).status).toBe(200);
      // (events of earlier tests' subjects may arrive too: only this key's count)
      const { value: mine } = await pollUntil(
        () => {
          const got = receiver.received.filter((r) => r.body?.data?.subject_id === u.keyId);
          return got.length >= 2 ? got : undefined;
        },
        { timeoutMs: 20_000, what: "this key's 50 % and 80 % events" },
      );
      const at80 = mine.filter((r) => r.body.data.threshold_percent === 80);
      expect(at80).toHaveLength(1);
      const got = at80[0]!;
      expect(got.body.type).toBe('budget.threshold');
      expect(got.body.data).toMatchObject({ subject: 'key', period: 'day', limit_usd: usd(5 * COST) });
      expect(got.body.data.spent_usd).toBeCloseTo(usd(4 * COST), 9);
      const expected = `sha256=${createHmac('sha256', secret).update(got.raw).digest('hex')}`;
      expect(got.headers['x-floodgate-signature']).toBe(expected);
      expect(mine.filter((r) => r.body.data.threshold_percent === 50)).toHaveLength(1);
      expect(mine.filter((r) => r.body.data.threshold_percent === 100)).toHaveLength(0);
      await adminCall(fx.gw, fx.adminKey, 'DELETE', `/api/admin/webhooks/${hook.body.id}`);
    } finally {
      await receiver.close();
    }
  });
});

describe('budgets across two instances (distributed)', () => {
  let gateways: TestGateway[];
  let close: () => Promise<void>;
  let fake: FakeProvider;
  let adminKey: string;
  const N = 3;
  const ROUNDS = 20;

  beforeAll(async () => {
    fake = await FakeProvider.start();
    adminKey = newApiKey();
    const started = await startGateways(2, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '100000',
      RATE_LIMIT_USER_RPM: '100000',
      RATE_LIMIT_IP_RPM: '100000',
    });
    gateways = started.gateways;
    close = started.close;
    await addProvider(gateways[0]!, adminKey, fake, [{ key: 'sk-a' }, { key: 'sk-b' }], {
      pricing: { 'gpt-4o-mini': PRICE },
    });
    // both instances price the model (the second learns the new provider through pub/sub)
    const user = await createUserWithKey(gateways[0]!, adminKey, 'user');
    for (const gw of gateways)
      await pollUntil(async () => (await chat(gw.url, user.key, 'warm')).status === 200, {
        timeoutMs: 10_000,
        what: 'both instances serving',
      });
  });
  afterAll(async () => {
    await close?.();
    await fake?.close();
  });

  it(`a key budget of ${N} × cost, ${10 * N} concurrent requests over both: exactly ${N} served, the rest 429 budget_exceeded — ${ROUNDS} of ${ROUNDS}; the spend API reports N × cost exactly`, async () => {
    const keys: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const u = await createUserWithKey(gateways[0]!, adminKey, 'user', {
        key: { budget: { limit_usd: usd(N * COST), period: 'day' } } as never,
      });
      keys.push(u.keyId);
      const answers = await Promise.all(
        Array.from({ length: 10 * N }, (_, i) => ask(gateways[i % 2]!.url, u.key)),
      );
      const served = answers.filter((a) => a.status === 200).length;
      const refused = answers.filter((a) => a.status === 429 && a.body?.error?.code === 'budget_exceeded');
      expect(
        { round, served, refused: refused.length },
        JSON.stringify(answers.filter((a) => a.status !== 200 && a.status !== 429).slice(0, 2)),
      ).toEqual({ round, served: N, refused: 9 * N });
      for (const r of refused) expect(Number(r.retryAfter)).toBeGreaterThan(0);
    }
    // the spend API: N × cost per key, exactly (rows are written in batches: wait for all of them)
    for (const gw of gateways) await gw.app.get(RequestLogWriter).flush();
    const { value: res } = await pollUntil(
      async () => {
        const r = await getJson(`${gateways[1]!.url}/api/admin/spend?group_by=key`, {
          headers: bearer(adminKey, false),
        });
        const rows = (r.body.data as { group: string; requests: number; cost_usd: number }[]).filter((x) =>
          keys.includes(x.group),
        );
        const requests = rows.reduce((s, x) => s + x.requests, 0);
        return requests === ROUNDS * 10 * N ? rows : undefined;
      },
      { timeoutMs: 20_000, what: 'every request in the rollups' },
    );
    for (const id of keys) {
      const cost = res.filter((x) => x.group === id).reduce((s, x) => s + micros(x.cost_usd), 0);
      expect(cost, id).toBe(N * COST);
    }
  });
});

describe('budgets on a Redis Cluster (stepped admission with rollback, settlement as its own step)', () => {
  let cluster: OwnRedisCluster;
  let redis: ReturnType<OwnRedisCluster['client']>;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let gateways: TestGateway[] = [];
  let fake: FakeProvider;
  const adminKey = newApiKey();
  const prefix = uniqueName('fgbcl');

  beforeAll(async () => {
    cluster = await OwnRedisCluster.start();
    redis = cluster.client();
    db = await createTestDatabase();
    fake = await FakeProvider.start();
    const env: Record<string, string> = {
      NODE_ENV: 'test',
      LOG_LEVEL: 'error',
      LOG_FORMAT: 'json',
      ENCRYPTION_KEYS: `test1:${Buffer.alloc(32, 7).toString('base64')}`,
      HOST: '127.0.0.1',
      SHUTDOWN_TIMEOUT_MS: '10000',
      DATABASE_URL: db.url,
      REDIS_CLUSTER_NODES: cluster.addresses.join(','),
      REDIS_PREFIX: prefix,
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '100000',
      RATE_LIMIT_USER_RPM: '100000',
      RATE_LIMIT_IP_RPM: '1000000',
      RATE_LIMIT_TIMEOUT_MS: '2000',
    };
    gateways = [await startInstance(env), await startInstance(env)];
    await addProvider(gateways[0]!, adminKey, fake, [{ key: 'sk-a' }, { key: 'sk-b' }], {
      pricing: { 'gpt-4o-mini': PRICE },
    });
    const user = await createUserWithKey(gateways[0]!, adminKey, 'user');
    for (const gw of gateways)
      await pollUntil(async () => (await chat(gw.url, user.key, 'warm')).status === 200, {
        timeoutMs: 10_000,
        what: 'both instances serving',
      });
  }, 120_000);

  afterAll(async () => {
    dropClientConnections(...gateways);
    await Promise.all(gateways.map((g) => g.close()));
    await fake?.close();
    redis?.disconnect();
    await cluster?.stop();
    await db?.drop();
  }, 60_000);

  it('key budget 10 × cost, user budget 3 × cost (tighter): 30 concurrent → exactly 3 served; the key reservations of refused requests rolled back; counters settle to 3 × cost', async () => {
    const N = 3;
    const u = await createUserWithKey(gateways[0]!, adminKey, 'user', {
      key: { budget: { limit_usd: usd(10 * COST), period: 'day' } } as never,
    });
    await adminCall(gateways[0]!, adminKey, 'PATCH', `/api/admin/users/${u.user.id}`, {
      budget: { limit_usd: usd(N * COST), period: 'day' },
    });
    const answers = await Promise.all(
      Array.from({ length: 10 * N }, (_, i) => ask(gateways[i % 2]!.url, u.key)),
    );
    const served = answers.filter((a) => a.status === 200).length;
    const refused = answers.filter(
      (a) => a.status === 429 && a.body?.error?.code === 'budget_exceeded',
    ).length;
    expect({ served, refused }).toEqual({ served: N, refused: 9 * N });
    const day = new Date().toISOString().slice(0, 10);
    // the settlements run after the answers (their own steps): wait for both counters
    await pollUntil(
      async () =>
        (await redis.get(`${prefix}:rl:{key:${u.keyId}}:budget:d${day}`)) === String(N * COST) &&
        (await redis.get(`${prefix}:rl:{user:${u.user.id}}:budget:d${day}`)) === String(N * COST),
      { timeoutMs: 10_000, what: 'both counters at N × cost' },
    );
  });
});
