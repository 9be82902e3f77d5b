import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey, newApiKey } from '../support/auth.js';
import { addProvider, chat, CLUSTER_REPEAT, dropClientConnections, pollUntil } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, startGateways, type TestGateway } from '../support/gateway.js';

/**
 * Three gateway instances on one Postgres and one Redis prefix (as replicas run). Limits are one
 * shared count, whichever instance a request lands on. `CLUSTER_REPEAT=N` repeats each case N times.
 */
describe('three instances, one Postgres and Redis: limits and revocation', () => {
  let cluster: Awaited<ReturnType<typeof startGateways>>;
  let gws: TestGateway[];
  let fake: FakeProvider;
  const adminKey = newApiKey();

  beforeAll(async () => {
    fake = await FakeProvider.start();
    cluster = await startGateways(3, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      // only the policy under test may refuse: the admin key (used for setup and as the relay client
      // in the max_rpm case), user and IP budgets are out of reach; a loaded machine must not turn
      // slow Redis replies into failure-mode answers (the fault suite covers those)
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_IP_RPM: '1000000',
      RATE_LIMIT_TIMEOUT_MS: '2000',
    });
    gws = cluster.gateways;
  });
  afterAll(async () => {
    dropClientConnections(...(gws ?? []));
    await cluster?.close();
    await fake?.close();
  });

  it(
    `client limits are exact across instances: 300 concurrent /api/me on a 30/min key → exactly 30 admitted; 60 concurrent chats on a 15/min key → exactly 15 upstream (${CLUSTER_REPEAT}×)`,
    { timeout: 60_000 + CLUSTER_REPEAT * 10_000 },
    async () => {
      const { providerId } = await addProvider(gws[0]!, adminKey, fake, [
        { key: 'sk-limits', max_concurrent: 100 },
      ]);
      expect(providerId).toBeTruthy();
      const admitted: number[] = [];
      const relayed: number[] = [];
      for (let round = 0; round < CLUSTER_REPEAT; round++) {
        const api = await createUserWithKey(gws[0]!, adminKey, 'user', { key: { limits: { rpm: 30 } } });
        const results = await Promise.all(
          Array.from({ length: 300 }, async (_, i) => {
            const res = await fetch(`${gws[i % 3]!.url}/api/me`, { headers: api.headers });
            await res.arrayBuffer();
            return { status: res.status, retryAfter: res.headers.get('retry-after'), instance: i % 3 };
          }),
        );
        const ok = results.filter((r) => r.status === 200);
        const limited = results.filter((r) => r.status === 429);
        expect(ok.length + limited.length).toBe(300); // nothing else: no 5xx, no 401
        expect(limited.every((r) => Number(r.retryAfter) >= 1)).toBe(true);
        expect(new Set(ok.map((r) => r.instance)).size).toBeGreaterThanOrEqual(2); // one shared count
        admitted.push(ok.length);

        // the same through the relay: only admitted requests reach the upstream
        const relay = await createUserWithKey(gws[0]!, adminKey, 'developer', {
          key: { limits: { rpm: 15 } },
        });
        fake.reset();
        const answers = await Promise.all(
          Array.from({ length: 60 }, (_, i) => chat(gws[i % 3]!.url, relay.key, `limit-${round}-${i}`)),
        );
        const statuses = answers.map((a) => a.status);
        expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
        expect(
          answers.filter((a) => a.status === 429).every((a) => a.body.error.code === 'rate_limit_exceeded'),
        ).toBe(true);
        relayed.push(fake.requests.length);
        expect(statuses.filter((s) => s === 200)).toHaveLength(fake.requests.length);
      }
      console.log(`[cluster] /api/me admitted per round (limit 30): ${admitted.join(', ')}`);
      console.log(`[cluster] chats reaching the upstream per round (limit 15): ${relayed.join(', ')}`);
      expect(admitted).toEqual(Array(CLUSTER_REPEAT).fill(30));
      expect(relayed).toEqual(Array(CLUSTER_REPEAT).fill(15));
    },
  );

  it(
    `an upstream key's max_rpm is never exceeded across instances: 90 concurrent chats over keys with max_rpm 12 and 8 → the upstream sees exactly 12 and 8 (${CLUSTER_REPEAT}×)`,
    { timeout: 60_000 + CLUSTER_REPEAT * 10_000 },
    async () => {
      const seen: string[] = [];
      for (let round = 0; round < CLUSTER_REPEAT; round++) {
        const a = `sk-rpm-a-${round}`;
        const b = `sk-rpm-b-${round}`;
        await addProvider(
          gws[round % 3]!,
          adminKey,
          fake,
          [
            { key: a, priority: 1, max_rpm: 12, max_concurrent: 100 },
            { key: b, priority: 1, max_rpm: 8, max_concurrent: 100 },
          ],
          { models: [`rpm-model-${round}`] },
        );
        fake.reset();
        const answers = await Promise.all(
          Array.from({ length: 90 }, (_, i) =>
            chat(gws[i % 3]!.url, adminKey, `rpm-${round}-${i}`, { model: `rpm-model-${round}` }),
          ),
        );
        const ok = answers.filter((x) => x.status === 200);
        const refused = answers.filter((x) => x.status === 429);
        expect(answers.filter((x) => x.status !== 200 && x.status !== 429).map((x) => x.text)).toEqual([]);
        expect(refused.every((x) => x.body.error.code === 'upstream_keys_rate_limited')).toBe(true);
        expect(refused.every((x) => Number(x.headers.get('retry-after')) >= 1)).toBe(true);
        const perKey = { a: fake.requestsFor(a).length, b: fake.requestsFor(b).length };
        seen.push(`${perKey.a}+${perKey.b}`);
        expect(perKey).toEqual({ a: 12, b: 8 });
        expect(ok).toHaveLength(20);
        expect(new Set(ok.map((x) => x.headers.get('x-floodgate-provider-key'))).size).toBe(2);
      }
      console.log(`[cluster] upstream requests per key per round (max_rpm 12+8): ${seen.join(', ')}`);
    },
  );

  it(
    `a client key revoked on A is refused by B and C within 1 s (both had it cached) (${CLUSTER_REPEAT}×)`,
    { timeout: 30_000 + CLUSTER_REPEAT * 5_000 },
    async () => {
      const [a, b, c] = gws as [TestGateway, TestGateway, TestGateway];
      const delays: string[] = [];
      for (let round = 0; round < CLUSTER_REPEAT; round++) {
        const u = await createUserWithKey(a, adminKey, 'user', { key: { limits: { rpm: 1000 } } });
        for (const gw of [b, c, b, c])
          expect((await getJson(`${gw.url}/api/me`, { headers: u.headers })).status).toBe(200);
        const revoke = await getJson(`${a.url}/api/admin/api-keys/${u.keyId}`, {
          method: 'DELETE',
          headers: bearer(adminKey, false),
        });
        expect(revoke.status).toBe(204);
        const refusedWithin = (gw: TestGateway) =>
          pollUntil(
            async () => {
              const r = await getJson(`${gw.url}/api/me`, { headers: u.headers });
              if (r.status === 200) return false;
              return r;
            },
            { timeoutMs: 1000, intervalMs: 10, what: `the revoke to reach ${gw.url}` },
          );
        const [onB, onC] = await Promise.all([refusedWithin(b), refusedWithin(c)]);
        delays.push(`${onB.ms.toFixed(0)}/${onC.ms.toFixed(0)}`);
        for (const seen of [onB, onC]) {
          expect(seen.value.status).toBe(401);
          expect(seen.value.body.error.code).toBe('api_key_revoked');
          expect(seen.ms).toBeLessThan(1000);
        }
        // and it stays refused everywhere (no stale cache entry revived)
        for (const gw of [a, b, c])
          expect((await getJson(`${gw.url}/api/me`, { headers: u.headers })).status).toBe(401);
      }
      console.log(`[cluster] revocation reached B/C after (ms): ${delays.join(', ')}`);
    },
  );
});
