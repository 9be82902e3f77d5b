import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { AdaptiveService } from '../../src/adaptive/services/adaptive.service.js';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import { newApiKey } from '../support/auth.js';
import { addProvider, dropClientConnections, FaultProxy, startInstance } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { isolatedEnv, type TestGateway } from '../support/gateway.js';
import { TEST_POSTGRES_URL } from '../support/services.js';

/**
 * Adaptive persists learned state of several providers per flush. When Postgres is unreachable
 * during a flush, every key changed since the last flush must stay marked for the next one — not
 * only the keys of the provider whose write failed first — so the durable copy catches up once
 * Postgres is back.
 */
describe('Adaptive flush during a Postgres outage', () => {
  let proxy: FaultProxy;
  let fake: FakeProvider;
  let gw: TestGateway;
  let cleanup: () => Promise<void>;
  let directUrl: string;
  const adminKey = newApiKey();

  beforeAll(async () => {
    proxy = await FaultProxy.start(TEST_POSTGRES_URL);
    fake = await FakeProvider.start();
    const isolated = await isolatedEnv('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      ADAPTIVE_FLUSH_MS: '600000', // flushes only when the test asks
    });
    cleanup = isolated.cleanup;
    directUrl = isolated.env.DATABASE_URL!;
    gw = await startInstance({ ...isolated.env, DATABASE_URL: proxy.url(directUrl) });
  });
  afterAll(async () => {
    await proxy?.revive().catch(() => undefined);
    dropClientConnections(gw);
    await gw?.close();
    await proxy?.close();
    await fake?.close();
    await cleanup?.();
  });

  it('keys of every provider changed before a failed flush are persisted by the next one', async () => {
    const pool = gw.app.get(KeyPoolService);
    const adaptive = gw.app.get(AdaptiveService);
    const providers = [
      await addProvider(gw, adminKey, fake, [{ key: 'sk-adaptive-a' }]),
      await addProvider(gw, adminKey, fake, [{ key: 'sk-adaptive-b' }]),
    ];
    await adaptive.flush();
    for (const p of providers) {
      const r = await pool.acquire(p.providerId);
      if (!r.ok) throw new Error(`acquire refused: ${r.refusal.message}`);
      await pool.report(r.lease, {
        status: 429,
        headers: {},
        upstreamError: {
          type: 'rate_limit_error',
          code: 'concurrency_limit_exceeded',
          message: 'Too many concurrent requests',
        },
      });
    }
    await adaptive.idle();

    await proxy.kill();
    await adaptive.flush(); // fails: Postgres unreachable
    await proxy.revive();
    await adaptive.flush();

    const db = new DataSource({ type: 'postgres', url: directUrl });
    await db.initialize();
    try {
      const rows = (await db.query('SELECT key_id FROM adaptive_key_state WHERE key_id = ANY($1)', [
        providers.map((p) => p.keyIds[0]),
      ])) as { key_id: string }[];
      expect(rows.map((r) => r.key_id).sort()).toEqual(providers.map((p) => p.keyIds[0]).sort());
    } finally {
      await db.destroy();
    }
  });
});
