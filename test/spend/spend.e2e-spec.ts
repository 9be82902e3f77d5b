import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { RequestLogWriter, type RequestLogEntry } from '../../src/relay/infrastructure/request-log.writer.js';
import { bearer, createUserWithKey, newApiKey, type UserWithKey } from '../support/auth.js';
import { addProvider, chat as clusterChat, pollUntil } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, MODES, startGateways, type TestGateway } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';

/**
 * Spend end to end: a provider with `pricing`, requests through the fake provider (whose usage is
 * fixed for a given body), the request log's cost per row, the rollup written in the same batch,
 * and the spend API's sums — exact in micro-dollars. Prices with 6 decimals make the rounding show.
 */

const PRICE = { input_per_mtok: 1.234567, output_per_mtok: 7.654321, cached_input_per_mtok: 0.5 };
const MICRO = { input: 1_234_567n, output: 7_654_321n, cached: 500_000n };
/** The catalog's gpt-4o (src/spend/domain/price-catalog.ts), for a model the provider does not price. */
const GPT4O = { input: 2_500_000n, output: 10_000_000n, cached: 1_250_000n };

/** The cost formula written out independently: round half up of Σ tokens × µ$/Mtok / 10^6. */
function expectedMicros(prompt: number, completion: number, cached = 0, price = MICRO): number {
  const n =
    BigInt(prompt - cached) * price.input + BigInt(cached) * price.cached + BigInt(completion) * price.output;
  return Number((n + 500_000n) / 1_000_000n);
}

const micros = (usd: number) => Math.round(usd * 1_000_000);

describe.each(MODES)('spend (%s)', (mode) => {
  let fx: RelayFixture;
  let writer: RequestLogWriter;
  let db: DataSource;
  let alice: UserWithKey;
  let bob: UserWithKey;

  beforeAll(async () => {
    fx = await startRelay(mode, {
      env: { RATE_LIMIT_KEY_RPM: '100000', RATE_LIMIT_USER_RPM: '100000' },
      provider: { pricing: { 'gpt-4o-mini': PRICE } },
    });
    writer = fx.gw.app.get(RequestLogWriter);
    db = fx.gw.app.get(DataSource);
    alice = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    bob = await createUserWithKey(fx.gw, fx.adminKey, 'developer');
  });
  afterAll(async () => {
    await fx?.close();
  });

  const spend = (path: string, key = fx.adminKey) =>
    getJson(`${fx.gw.url}${path}`, { headers: bearer(key, false) });

  const chat = async (key: string, model = 'gpt-4o-mini', requestId = randomUUID()) => {
    const res = await getJson(`${fx.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...bearer(key), 'x-request-id': requestId },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'price me' }] }),
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body as { usage: { prompt_tokens: number; completion_tokens: number } };
  };

  /** The account runs after the answer is sent: wait until each request's row is written. */
  const logged = async (...requestIds: string[]) =>
    pollUntil(
      async () => {
        await writer.flush();
        const rows = (await db.query('SELECT request_id FROM request_log WHERE request_id = ANY($1)', [
          requestIds,
        ])) as unknown[];
        return rows.length === requestIds.length;
      },
      { timeoutMs: 10_000, what: 'the requests in the request log' },
    );

  const costOfRow = async (requestId: string) =>
    (await db.query(
      'SELECT prompt_tokens, completion_tokens, cost_micro_usd FROM request_log WHERE request_id = $1',
      [requestId],
    )) as { prompt_tokens: number; completion_tokens: number; cost_micro_usd: string | null }[];

  it('pricing is part of the provider: stored, shown, patched, audited; a bad price is a 400 naming it', async () => {
    const got = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/providers/${fx.providerId}`);
    expect(got.body.pricing).toEqual({ 'gpt-4o-mini': PRICE });
    const bad = await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/providers/${fx.providerId}`, {
      pricing: { 'gpt-4o-mini': { input_per_mtok: 1, output_per_mtok: 0.1234567 } },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe('pricing.gpt-4o-mini.output_per_mtok');
    const neg = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/providers', {
      name: `p-${randomUUID().slice(0, 8)}`,
      base_url: fx.fake.baseUrl,
      pricing: { m: { input_per_mtok: -1, output_per_mtok: 1 } },
    });
    expect(neg.status).toBe(400);
    expect(neg.body.error.param).toBe('pricing.m.input_per_mtok');
    // a pattern entry, cached price defaulted; then back to the original table
    const patched = await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/providers/${fx.providerId}`, {
      pricing: { 'gpt-4o-mini': PRICE, 'text-embedding-*': { input_per_mtok: 0.02, output_per_mtok: 0 } },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.pricing['text-embedding-*']).toEqual({
      input_per_mtok: 0.02,
      output_per_mtok: 0,
      cached_input_per_mtok: 0.02,
    });
    const audit = await adminCall(
      fx.gw,
      fx.adminKey,
      'GET',
      `/api/admin/audit?action=provider.update&limit=5`,
    );
    expect(JSON.stringify(audit.body)).toContain('text-embedding-*');
    await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/providers/${fx.providerId}`, {
      pricing: { 'gpt-4o-mini': PRICE },
    });
  });

  it('N requests: every row costs tokens × price exactly; GET /api/admin/spend?group_by=key sums N × that cost', async () => {
    const N = 7;
    const ids = Array.from({ length: N }, () => randomUUID());
    const answers = [];
    for (const id of ids) answers.push(await chat(alice.key, 'gpt-4o-mini', id));
    const { prompt_tokens: p, completion_tokens: c } = answers[0]!.usage;
    for (const a of answers) expect(a.usage).toMatchObject({ prompt_tokens: p, completion_tokens: c });
    const each = expectedMicros(p, c);
    expect(each).toBeGreaterThan(0);
    await logged(...ids);
    for (const id of ids) expect((await costOfRow(id))[0]?.cost_micro_usd).toBe(String(each));

    const res = await spend('/api/admin/spend?group_by=key');
    expect(res.status).toBe(200);
    const mine = (res.body.data as { group: string; requests: number; cost_usd: number }[]).filter(
      (r) => r.group === alice.keyId,
    );
    expect(mine.reduce((s, r) => s + r.requests, 0)).toBe(N);
    expect(mine.reduce((s, r) => s + micros(r.cost_usd), 0)).toBe(N * each);
    const row = mine[0] as unknown as Record<string, unknown>;
    expect(Object.keys(row).sort()).toEqual(
      ['completion_tokens', 'cost_usd', 'group', 'interval_start', 'prompt_tokens', 'requests'].sort(),
    );
    expect(new Date(row.interval_start as string).getTime() % 3_600_000).toBe(0);

    // by model, provider and user; daily
    const byModel = await spend('/api/admin/spend?group_by=model&interval=day');
    expect(byModel.body.data.some((r: { group: string }) => r.group === 'gpt-4o-mini')).toBe(true);
    expect(new Date(byModel.body.data[0].interval_start).getTime() % 86_400_000).toBe(0);
    const byUser = await spend('/api/admin/spend?group_by=user');
    const aliceRows = byUser.body.data.filter((r: { group: string }) => r.group === alice.user.id);
    expect(aliceRows.reduce((s: number, r: { cost_usd: number }) => s + micros(r.cost_usd), 0)).toBe(
      N * each,
    );
    const byProvider = await spend('/api/admin/spend?group_by=provider');
    expect(byProvider.body.data.some((r: { group: string }) => r.group === fx.providerId)).toBe(true);
    // a window that ends before the requests: nothing of them
    const past = await spend('/api/admin/spend?group_by=key&from=2020-01-01&to=2020-01-02&interval=day');
    expect(past.body).toEqual({ data: [] });
  });

  it("group_by=team: a team member's requests roll up under the team", async () => {
    const team = await getJson(`${fx.gw.url}/api/admin/teams`, {
      method: 'POST',
      headers: bearer(fx.adminKey),
      body: JSON.stringify({ name: `spend-team-${randomUUID().slice(0, 8)}` }),
    });
    expect(team.status, JSON.stringify(team.body)).toBe(201);
    const carol = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    const joined = await getJson(`${fx.gw.url}/api/admin/teams/${team.body.id}/members/${carol.user.id}`, {
      method: 'POST',
      headers: bearer(fx.adminKey),
      body: JSON.stringify({ role: 'member' }),
    });
    expect(joined.status, JSON.stringify(joined.body)).toBe(201);
    const N = 3;
    const ids = Array.from({ length: N }, () => randomUUID());
    let usage = { prompt_tokens: 0, completion_tokens: 0 };
    for (const id of ids) usage = (await chat(carol.key, 'gpt-4o-mini', id)).usage;
    await logged(...ids);
    const each = expectedMicros(usage.prompt_tokens, usage.completion_tokens);
    const res = await spend('/api/admin/spend?group_by=team');
    expect(res.status).toBe(200);
    const rows = (res.body.data as { group: string; requests: number; cost_usd: number }[]).filter(
      (r) => r.group === team.body.id,
    );
    expect(rows.reduce((t, r) => t + r.requests, 0)).toBe(N);
    expect(rows.reduce((t, r) => t + micros(r.cost_usd), 0)).toBe(N * each);
  });

  it('GET /api/me/spend: only the caller’s own keys', async () => {
    const N = 3;
    const ids = Array.from({ length: N + 1 }, () => randomUUID());
    for (let i = 0; i < N; i++) await chat(bob.key, 'gpt-4o-mini', ids[i]);
    const { usage } = await chat(alice.key, 'gpt-4o-mini', ids[N]);
    await logged(...ids);
    const each = expectedMicros(usage.prompt_tokens, usage.completion_tokens);
    const own = await spend('/api/me/spend', bob.key);
    expect(own.status).toBe(200);
    expect(own.body.data.map((r: { group: string }) => r.group)).toEqual(own.body.data.map(() => bob.keyId));
    expect(own.body.data.reduce((s: number, r: { requests: number }) => s + r.requests, 0)).toBe(N);
    expect(own.body.data.reduce((s: number, r: { cost_usd: number }) => s + micros(r.cost_usd), 0)).toBe(
      N * each,
    );
    const byModel = await spend('/api/me/spend?group_by=model', bob.key);
    expect(byModel.body.data.map((r: { group: string }) => r.group)).toEqual(
      byModel.body.data.map(() => 'gpt-4o-mini'),
    );
    // a plain user may read its own spend, not everyone's
    expect((await spend('/api/me/spend', alice.key)).status).toBe(200);
    expect((await spend('/api/admin/spend', alice.key)).status).toBe(403);
  });

  it('a model the provider does not price is priced from the catalog; cached prompt tokens at the cached rate', async () => {
    const id = randomUUID();
    const { usage } = await chat(alice.key, 'gpt-4o', id);
    fx.fake.when({
      model: 'gpt-4o-mini',
      times: 1,
      reply: {
        body: {
          id: 'chatcmpl-cached',
          object: 'chat.completion',
          created: 1,
          model: 'gpt-4o-mini',
          choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
          usage: {
            prompt_tokens: 1000,
            completion_tokens: 10,
            prompt_tokens_details: { cached_tokens: 600 },
          },
        },
      },
    });
    const cachedId = randomUUID();
    await chat(alice.key, 'gpt-4o-mini', cachedId);
    await logged(id, cachedId);
    expect((await costOfRow(id))[0]?.cost_micro_usd).toBe(
      String(expectedMicros(usage.prompt_tokens, usage.completion_tokens, 0, GPT4O)),
    );
    // 400 × 1.234567 + 600 × 0.5 + 10 × 7.654321 µ$ = 493.8268 + 300 + 76.54321 → 870
    expect((await costOfRow(cachedId))[0]?.cost_micro_usd).toBe(String(expectedMicros(1000, 10, 600)));
    expect(expectedMicros(1000, 10, 600)).toBe(870);
  });

  it("a routed request is priced at its target's model on the target's provider; the rollup groups it by that model", async () => {
    const alias = `alias-${randomUUID().slice(0, 8)}`;
    const route = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/routes', {
      model: alias,
      targets: [{ provider_id: fx.providerId, model: 'gpt-4o-mini' }],
    });
    expect(route.status, JSON.stringify(route.body)).toBe(201);
    const key = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    const ids = [randomUUID(), randomUUID()];
    const answers = [await chat(key.key, alias, ids[0]), await chat(key.key, alias, ids[1])];
    await logged(...ids);
    let total = 0;
    for (const [i, id] of ids.entries()) {
      const { prompt_tokens: p, completion_tokens: c } = answers[i]!.usage;
      const [row] = await costOfRow(id);
      expect(row?.cost_micro_usd).toBe(String(expectedMicros(p, c)));
      total += expectedMicros(p, c);
    }
    const own = await spend('/api/me/spend?group_by=model', key.key);
    expect(own.body.data.map((r: { group: string }) => r.group)).toEqual(
      own.body.data.map(() => 'gpt-4o-mini'),
    );
    expect(own.body.data.reduce((s: number, r: { cost_usd: number }) => s + micros(r.cost_usd), 0)).toBe(
      total,
    );
  });

  it('a stream cut mid-way is charged what was counted', async () => {
    fx.fake.when({
      model: 'gpt-4o-mini',
      times: 1,
      reply: { chunkDelayMs: 150, text: Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ') },
    });
    const requestId = randomUUID();
    const controller = new AbortController();
    const res = await fetch(`${fx.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...bearer(alice.key), 'x-request-id': requestId },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: 'stream then stop' }],
      }),
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let text = '';
    const decoder = new TextDecoder();
    while (!text.includes('word3')) text += decoder.decode((await reader.read()).value);
    controller.abort();
    const { value: row } = await pollUntil(
      async () => {
        await writer.flush();
        return (await costOfRow(requestId))[0];
      },
      { timeoutMs: 10_000, what: 'the cut-off request in the request log' },
    );
    expect(row.completion_tokens).toBeGreaterThan(0);
    expect(row.completion_tokens).toBeLessThan(40);
    expect(row.cost_micro_usd).toBe(String(expectedMicros(row.prompt_tokens, row.completion_tokens)));
    expect(Number(row.cost_micro_usd)).toBeGreaterThan(0);
  });

  it('a 400 naming each bad parameter', async () => {
    const cases: [string, string][] = [
      ['/api/admin/spend?group_by=week', 'group_by'],
      ['/api/admin/spend?interval=minute', 'interval'],
      ['/api/admin/spend?from=yesterday', 'from'],
      ['/api/admin/spend?to=2026-02-30T25:00:00Z', 'to'],
      ['/api/admin/spend?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z', 'from'],
      ['/api/admin/spend?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&interval=hour', 'from'],
      ['/api/admin/spend?sort=cost', 'sort'],
      ['/api/me/spend?group_by=user', 'group_by'],
      ['/api/me/spend?group_by=team', 'group_by'],
    ];
    for (const [path, param] of cases) {
      const res = await spend(path);
      expect(res.status, path).toBe(400);
      expect(res.body.error.param, path).toBe(param);
    }
  });

  it('the rollup commits with its rows: a batch refused (and split) never double counts', async () => {
    const keyId = randomUUID();
    const tag = randomUUID().slice(0, 8);
    const entry = (i: number, over: Partial<RequestLogEntry> = {}): RequestLogEntry => ({
      createdAt: new Date(),
      requestId: `rollup-${tag}-${i}`,
      apiKeyId: keyId,
      userId: null,
      providerId: fx.providerId,
      providerKeyId: null,
      endpoint: 'chat/completions',
      model: 'gpt-4o-mini',
      priority: 'normal',
      status: 200,
      errorCode: null,
      promptTokens: 10,
      completionTokens: 5,
      queueMs: 0,
      upstreamMs: 1,
      overheadMs: 1,
      attempts: 1,
      stream: false,
      costMicroUsd: 7,
      ...over,
    });
    for (let i = 0; i < 9; i++) writer.add(entry(i));
    // its request-log row is fine; its rollup row is not (not a uuid): the batch's second statement fails
    writer.add(entry(9, { teamId: 'not-a-uuid' }));
    for (let i = 10; i < 20; i++) writer.add(entry(i));
    await writer.flush();
    const logged = (await db.query(
      `SELECT request_id, count(*)::int AS n FROM request_log WHERE request_id LIKE $1 GROUP BY request_id`,
      [`rollup-${tag}-%`],
    )) as { request_id: string; n: number }[];
    expect(logged.length).toBe(19);
    expect(logged.every((r) => r.n === 1)).toBe(true);
    const [sum] = (await db.query(
      `SELECT sum(requests)::int AS requests, sum(cost_micro_usd)::int AS cost FROM spend_rollup WHERE api_key_id = $1`,
      [keyId],
    )) as { requests: number; cost: number }[];
    expect(sum).toEqual({ requests: 19, cost: 19 * 7 });
  });
});

describe('spend across two instances (distributed)', () => {
  let cluster: Awaited<ReturnType<typeof startGateways>>;
  let fake: FakeProvider;
  const adminKey = newApiKey();

  beforeAll(async () => {
    fake = await FakeProvider.start();
    cluster = await startGateways(2, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '100000',
      RATE_LIMIT_USER_RPM: '100000',
    });
  });
  afterAll(async () => {
    await cluster?.close();
    await fake?.close();
  });

  it("a price written on one instance prices the other's requests; the spend API sums both instances' rollups", async () => {
    const [a, b] = cluster.gateways as [TestGateway, TestGateway];
    const { providerId } = await addProvider(a, adminKey, fake, [{ key: 'sk-spend-1' }], {
      pricing: { 'gpt-4o-mini': PRICE },
    });
    const user = await createUserWithKey(a, adminKey, 'user');
    const db = a.app.get(DataSource);
    const flushBoth = () => Promise.all([a, b].map((g) => g.app.get(RequestLogWriter).flush()));
    const rowOf = async (requestId: string) => {
      const { value } = await pollUntil(
        async () => {
          await flushBoth();
          const rows = (await db.query(
            'SELECT prompt_tokens, completion_tokens, cost_micro_usd FROM request_log WHERE request_id = $1',
            [requestId],
          )) as { prompt_tokens: number; completion_tokens: number; cost_micro_usd: string | null }[];
          return rows[0];
        },
        { timeoutMs: 10_000, what: `request ${requestId} in the request log` },
      );
      return value;
    };

    // instance b learned of the provider (and its price) through pub/sub
    const first = await pollUntil(
      async () => {
        const r = await clusterChat(b.url, user.key, 'two-instances');
        if (r.status !== 200) return false;
        const row = await rowOf(r.requestId);
        return row.cost_micro_usd === String(expectedMicros(row.prompt_tokens, row.completion_tokens)) && row;
      },
      { timeoutMs: 10_000, what: "instance b pricing at the provider's price" },
    );
    let total = Number(first.value.cost_micro_usd);
    let requests = 1;

    const doubled = { input_per_mtok: 2.469134, output_per_mtok: 15.308642, cached_input_per_mtok: 1 };
    const patched = await adminCall(a, adminKey, 'PATCH', `/api/admin/providers/${providerId}`, {
      pricing: { 'gpt-4o-mini': doubled },
    });
    expect(patched.status).toBe(200);
    const DOUBLED = { input: 2_469_134n, output: 15_308_642n, cached: 1_000_000n };
    await pollUntil(
      async () => {
        const r = await clusterChat(b.url, user.key, 'two-instances');
        expect(r.status).toBe(200);
        const row = await rowOf(r.requestId);
        total += Number(row.cost_micro_usd);
        requests++;
        return (
          row.cost_micro_usd === String(expectedMicros(row.prompt_tokens, row.completion_tokens, 0, DOUBLED))
        );
      },
      { timeoutMs: 10_000, intervalMs: 100, what: 'instance b pricing at the new price' },
    );
    // and a request on a, at the new price at once (its own write)
    const onA = await clusterChat(a.url, user.key, 'two-instances');
    const rowA = await rowOf(onA.requestId);
    expect(rowA.cost_micro_usd).toBe(
      String(expectedMicros(rowA.prompt_tokens, rowA.completion_tokens, 0, DOUBLED)),
    );
    total += Number(rowA.cost_micro_usd);
    requests++;

    await flushBoth();
    for (const g of [a, b]) {
      const res = await getJson(`${g.url}/api/me/spend`, { headers: bearer(user.key, false) });
      expect(res.status).toBe(200);
      expect(res.body.data.reduce((s: number, r: { requests: number }) => s + r.requests, 0)).toBe(requests);
      expect(res.body.data.reduce((s: number, r: { cost_usd: number }) => s + micros(r.cost_usd), 0)).toBe(
        total,
      );
    }
  });
});
