import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUserWithKey } from '../support/auth.js';
import {
  addProvider,
  chat,
  dropClientConnections,
  FaultProxy,
  pollUntil,
  sleep,
  startInstance,
  type RelayAnswer,
} from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { isolatedEnv, type TestGateway } from '../support/gateway.js';
import { newApiKey } from '../support/auth.js';
import { TEST_REDIS_URL } from '../support/services.js';

/**
 * Issue 13 item 8: the request log and the relay metric say what the client saw. Three different
 * 503s — queue_full (the provider's queue is full), no_usable_upstream_keys (no key can serve) and
 * dependency_unavailable (Redis unreachable) — each land in request_log with the client's status
 * and error code, and in floodgate_relay_requests_total with their own outcome.
 */
describe('request log and relay metrics match the answer the client got', () => {
  let proxy: FaultProxy;
  let fake: FakeProvider;
  let gw: TestGateway;
  let cleanup: () => Promise<void>;
  let db: pg.Client;
  let client: string;
  const adminKey = newApiKey();

  beforeAll(async () => {
    proxy = await FaultProxy.start(TEST_REDIS_URL);
    fake = await FakeProvider.start();
    const isolated = await isolatedEnv('distributed');
    cleanup = isolated.cleanup;
    gw = await startInstance({
      ...isolated.env,
      REDIS_URL: proxy.url(isolated.env.REDIS_URL!),
      ADMIN_BOOTSTRAP_KEY: adminKey,
      QUEUE_MAX_PER_PROVIDER: '1',
      QUEUE_FULL_POLICY: 'reject',
      RATE_LIMIT_FAILURE_MODE: 'open',
    });
    await addProvider(gw, adminKey, fake, [{ key: 'sk-ok' }], { name: 'steady' });
    await addProvider(gw, adminKey, fake, [{ key: 'sk-busy', max_concurrent: 1 }], {
      name: 'busy',
      models: ['busy-model'],
    });
    const dead = await addProvider(gw, adminKey, fake, [{ key: 'sk-dead' }], {
      name: 'dead',
      models: ['dead-model'],
    });
    const off = await fetch(`${gw.url}/api/admin/provider-keys/${dead.keyIds[0]}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ enabled: false }),
    });
    expect(off.status).toBe(200);
    fake.when({ model: 'busy-model', reply: { delayMs: 1500 } });
    client = (await createUserWithKey(gw, adminKey, 'developer', { key: { limits: { rpm: 100000 } } })).key;
    db = new pg.Client({ connectionString: gw.env.DATABASE_URL });
    await db.connect();
  });
  afterAll(async () => {
    await proxy?.revive().catch(() => undefined);
    await db?.end();
    dropClientConnections(gw);
    await gw?.close();
    await proxy?.close();
    await fake?.close();
    await cleanup?.();
  });

  /** floodgate_relay_requests_total by `provider/outcome`. */
  const relayCounts = async (): Promise<Map<string, number>> => {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    const out = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (!line.startsWith('floodgate_relay_requests_total{')) continue;
      const provider = /provider="([^"]*)"/.exec(line)?.[1];
      const outcome = /outcome="([^"]*)"/.exec(line)?.[1];
      const key = `${provider}/${outcome}`;
      out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
    }
    return out;
  };
  const delta = (before: Map<string, number>, after: Map<string, number>): Record<string, number> => {
    const d: Record<string, number> = {};
    for (const [k, v] of after) if (v - (before.get(k) ?? 0) > 0) d[k] = v - (before.get(k) ?? 0);
    return d;
  };
  /** Each answer's request_log row (status, error_code), once the writer has flushed it. */
  const loggedRows = async (answers: RelayAnswer[]): Promise<Map<string, string>> => {
    const ids = answers.map((a) => a.requestId);
    let rows = new Map<string, string>();
    await pollUntil(
      async () => {
        const r = await db.query<{ request_id: string; status: number; error_code: string | null }>(
          'SELECT request_id, status, error_code FROM request_log WHERE request_id = ANY($1::text[])',
          [ids],
        );
        rows = new Map(r.rows.map((x) => [x.request_id, `${x.status} ${x.error_code ?? '-'}`]));
        return rows.size === ids.length;
      },
      { timeoutMs: 15_000, intervalMs: 200, what: 'the request_log rows of every answer' },
    );
    return rows;
  };
  const seen = (a: RelayAnswer): string =>
    `${a.status} ${(a.body as { error?: { code?: string } })?.error?.code ?? '-'}`;

  it('503 queue_full and 503 no_usable_upstream_keys are logged and counted as themselves', async () => {
    const before = await relayCounts();
    const holder = chat(gw.url, client, 'holder', { model: 'busy-model' });
    await sleep(300);
    const waiter = chat(gw.url, client, 'waiter', { model: 'busy-model' });
    await sleep(300);
    const full = await chat(gw.url, client, 'full', { model: 'busy-model' });
    const noKeys = await chat(gw.url, client, 'no-keys', { model: 'dead-model' });
    const answers = [await holder, await waiter, full, noKeys];
    expect(seen(full)).toBe('503 queue_full');
    expect(seen(noKeys)).toBe('503 no_usable_upstream_keys');
    const rows = await loggedRows(answers);
    expect(answers.map((a) => rows.get(a.requestId))).toEqual(answers.map(seen));
    const counted = delta(before, await relayCounts());
    expect(counted).toEqual({ 'busy/ok': 2, 'busy/queue_full': 1, 'dead/no_usable_keys': 1 });
  });

  it('503 dependency_unavailable (Redis unreachable) is logged as 503 dependency_unavailable, not 500 internal_error', async () => {
    expect((await chat(gw.url, client, 'warm')).status).toBe(200);
    const before = await relayCounts();
    await proxy.kill();
    const during: RelayAnswer[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        during.push(await chat(gw.url, client, `down-${i}`));
        await sleep(100);
      }
    } finally {
      await proxy.revive();
    }
    console.log(`[faults] relay while Redis is down: ${during.map(seen).join(', ')}`);
    const unavailable = during.filter((a) => seen(a) === '503 dependency_unavailable');
    expect(unavailable.length).toBeGreaterThan(0);
    expect(during.filter((a) => a.status >= 500 && a.status !== 503)).toEqual([]);
    const rows = await loggedRows(during);
    expect(during.map((a) => rows.get(a.requestId))).toEqual(during.map(seen));
    const counted = delta(before, await relayCounts());
    expect(counted['steady/dependency_unavailable']).toBe(unavailable.length);
    expect(counted['steady/error'] ?? 0).toBe(0);
    expect(counted['steady/queue_full'] ?? 0).toBe(0);
  });
});
