/**
 * Team limits (docs/rate-limit.md "Policies", subject `team:{id}`): a team's rpm and tpm are shared by
 * every key of its members and decided in the same atomic step as the key's and the user's (on the
 * relay, inside the admission script). The tightest applies; the refusal names the team's policy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey, newApiKey } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, MODES, startGateway, startGateways, type TestGateway } from '../support/gateway.js';
import { adminCall } from '../support/relay.js';

const ENV = {
  RATE_LIMIT_KEY_RPM: '1000',
  RATE_LIMIT_USER_RPM: '1000',
  RATE_LIMIT_IP_RPM: '100000',
  RATE_LIMIT_TIMEOUT_MS: '2000',
};

interface Setup {
  gateways: TestGateway[];
  adminKey: string;
  fake: FakeProvider;
  close(): Promise<void>;
}

async function withProvider(gateways: TestGateway[], adminKey: string, fake: FakeProvider): Promise<void> {
  const provider = await adminCall(gateways[0]!, adminKey, 'POST', '/api/admin/providers', {
    name: 'fake',
    base_url: fake.baseUrl,
    models: fake.models,
    timeout_ms: 10_000,
  });
  if (provider.status !== 201)
    throw new Error(`provider: ${provider.status} ${JSON.stringify(provider.body)}`);
  const key = await adminCall(
    gateways[0]!,
    adminKey,
    'POST',
    `/api/admin/providers/${provider.body.id}/keys`,
    {
      label: 'k',
      key: 'sk-team-limits',
    },
  );
  if (key.status !== 201) throw new Error(`upstream key: ${key.status} ${JSON.stringify(key.body)}`);
}

/** A team with `limits`, and `keys` keys of two of its members (alternating owners). */
async function teamWithKeys(
  s: Setup,
  limits: { rpm?: number | null; tpm?: number | null },
  keys: number,
  keyLimits: { rpm?: number; tpm?: number } | null = null,
): Promise<{ teamId: string; keys: string[]; keyIds: string[]; ownerIds: string[] }> {
  const gw = s.gateways[0]!;
  const team = await adminCall(gw, s.adminKey, 'POST', '/api/admin/teams', {
    name: `team-${newApiKey().slice(3, 13)}`,
    limits,
  });
  if (team.status !== 201) throw new Error(`team: ${team.status} ${JSON.stringify(team.body)}`);
  const owners = [
    await createUserWithKey(gw, s.adminKey, 'user'),
    await createUserWithKey(gw, s.adminKey, 'user'),
  ];
  for (const o of owners) {
    const m = await adminCall(
      gw,
      s.adminKey,
      'POST',
      `/api/admin/teams/${team.body.id}/members/${o.user.id}`,
      {},
    );
    if (m.status !== 201) throw new Error(`member: ${m.status} ${JSON.stringify(m.body)}`);
  }
  const raw: string[] = [];
  const ids: string[] = [];
  for (let i = 0; i < keys; i++) {
    const owner = owners[i % 2]!;
    const k = await adminCall(gw, s.adminKey, 'POST', `/api/admin/users/${owner.user.id}/keys`, {
      name: `k${i}`,
      ...(keyLimits ? { limits: keyLimits } : {}),
    });
    if (k.status !== 201 || k.body.team_id !== team.body.id)
      throw new Error(`key: ${k.status} ${JSON.stringify(k.body)}`);
    raw.push(k.body.key as string);
    ids.push(k.body.id as string);
  }
  return { teamId: team.body.id as string, keys: raw, keyIds: ids, ownerIds: owners.map((o) => o.user.id) };
}

function chat(gw: TestGateway, key: string) {
  return getJson(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: bearer(key),
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
}

function sharedCases(setup: () => Setup) {
  it('a team rpm of 3 shared by two keys of the team: the 4th request across both keys is 429 naming policy "team"', async () => {
    const s = setup();
    const { teamId, keys } = await teamWithKeys(s, { rpm: 3 }, 2);
    const gws = s.gateways;
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await chat(gws[i % gws.length]!, keys[i % 2]!);
      statuses.push(r.status);
      expect(r.headers.get('ratelimit-policy')).toContain('"team";q=3;w=60');
    }
    expect(statuses).toEqual([200, 200, 200]);
    const refused = await chat(gws[3 % gws.length]!, keys[1]!);
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({
      type: 'rate_limit_error',
      code: 'rate_limit_exceeded',
      param: 'team',
    });
    expect(refused.body.error.message).toContain('policy "team"');
    expect(refused.headers.get('x-ratelimit-limit')).toBe('3');
    expect(refused.headers.get('x-ratelimit-remaining')).toBe('0');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // the other key of the team is refused too; the admin API shows the team's count
    expect((await chat(gws[0]!, keys[0]!)).status).toBe(429);
    const state = await adminCall(
      gws[gws.length - 1]!,
      s.adminKey,
      'GET',
      `/api/admin/rate-limits/team:${teamId}`,
    );
    expect(state.status).toBe(200);
    expect(state.body.subject).toBe(`team:${teamId}`);
    expect(state.body.policies).toEqual([
      expect.objectContaining({ name: 'team', limit: 3, current: 3, remaining: 0 }),
    ]);
    // a reset forgets the team's counters: the team is served again
    const reset = await getJson(`${gws[0]!.url}/api/admin/rate-limits/team:${teamId}`, {
      method: 'DELETE',
      headers: bearer(s.adminKey, false),
    });
    expect(reset.status).toBe(204);
    expect((await chat(gws[0]!, keys[0]!)).status).toBe(200);
  });

  it('the tightest applies: a key tighter than its team is refused by "key", the team still has room', async () => {
    const s = setup();
    const { keys, ownerIds } = await teamWithKeys(s, { rpm: 10 }, 2);
    const gw = s.gateways[0]!;
    // a third, tighter key of one of the team's members
    const k = await adminCall(gw, s.adminKey, 'POST', `/api/admin/users/${ownerIds[0]}/keys`, {
      name: 'tight',
      limits: { rpm: 1 },
    });
    expect(k.status).toBe(201);
    expect((await chat(gw, k.body.key)).status).toBe(200);
    const refused = await chat(gw, k.body.key);
    expect(refused.status).toBe(429);
    expect(refused.body.error.param).toBe('key');
    expect((await chat(gw, keys[0]!)).status).toBe(200);
  });

  it('a team tpm is charged with the answers of every key of the team and refuses the next request ("team_tpm")', async () => {
    const s = setup();
    // the keys have a tpm of their own too: one answer charges both budgets (two pairs in one rider)
    const { teamId, keys, keyIds } = await teamWithKeys(s, { tpm: 5 }, 2, { tpm: 100_000 });
    const gws = s.gateways;
    const first = await chat(gws[0]!, keys[0]!);
    expect(first.status).toBe(200);
    expect(first.body.usage.total_tokens).toBeGreaterThanOrEqual(5);
    // the charge lands after the answer: wait until the team's budget shows it
    const deadline = Date.now() + 5_000;
    let used = 0;
    while (Date.now() < deadline) {
      const state = await adminCall(gws[0]!, s.adminKey, 'GET', `/api/admin/rate-limits/team:${teamId}`);
      used = state.body.policies.find((p: { name: string }) => p.name === 'team_tpm')?.current ?? 0;
      if (used >= 5) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(used).toBe(first.body.usage.total_tokens);
    const keyState = await adminCall(gws[0]!, s.adminKey, 'GET', `/api/admin/rate-limits/key:${keyIds[0]}`);
    expect(keyState.body.policies.find((p: { name: string }) => p.name === 'tpm')?.current).toBe(
      first.body.usage.total_tokens,
    );
    const refused = await chat(gws[gws.length - 1]!, keys[1]!);
    expect(refused.status).toBe(429);
    expect(refused.body.error.param).toBe('team_tpm');
  });

  it('team:{id} subjects: 404 for an unknown team, 400 for a malformed one', async () => {
    const s = setup();
    const gw = s.gateways[0]!;
    const missing = await adminCall(
      gw,
      s.adminKey,
      'GET',
      '/api/admin/rate-limits/team:00000000-0000-4000-8000-000000000000',
    );
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('team_not_found');
    const bad = await adminCall(gw, s.adminKey, 'GET', '/api/admin/rate-limits/team:nope');
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe('subject');
  });
}

describe.each(MODES)('team limits, one instance (%s mode)', (mode) => {
  let s: Setup;
  beforeAll(async () => {
    const fake = await FakeProvider.start();
    const adminKey = newApiKey();
    const gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey, ...ENV });
    await withProvider([gw], adminKey, fake);
    s = {
      gateways: [gw],
      adminKey,
      fake,
      close: async () => {
        await gw.close();
        await fake.close();
      },
    };
  });
  afterAll(async () => {
    await s?.close();
  });
  sharedCases(() => s);
});

describe('team limits, two instances sharing one Redis (distributed)', () => {
  let s: Setup;
  beforeAll(async () => {
    const fake = await FakeProvider.start();
    const adminKey = newApiKey();
    const started = await startGateways(2, { ADMIN_BOOTSTRAP_KEY: adminKey, ...ENV });
    await withProvider(started.gateways, adminKey, fake);
    s = {
      gateways: started.gateways,
      adminKey,
      fake,
      close: async () => {
        await started.close();
        await fake.close();
      },
    };
  });
  afterAll(async () => {
    await s?.close();
  });
  sharedCases(() => s);

  it('exact under concurrency: a team rpm of 20 over 4 keys, 200 concurrent requests across both instances → exactly 20 served', async () => {
    const { keys } = await teamWithKeys(s, { rpm: 20 }, 4);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => chat(s.gateways[i % 2]!, keys[i % 4]!)),
    );
    const served = results.filter((r) => r.status === 200).length;
    const limited = results.filter((r) => r.status === 429);
    expect(served + limited.length).toBe(200);
    expect(served).toBe(20);
    expect(limited.every((r) => r.body.error.param === 'team')).toBe(true);
  });
});
