import { afterAll, describe, expect, it } from 'vitest';
import { FakeProvider } from '../support/fake-provider.js';
import { freePort, spawnGateway, startGateways, type GatewayProcess } from '../support/gateway.js';
import { adminClient, newAdminKey, seedProvider, services, sleep, waitFor } from './helpers.js';

/**
 * Issue 6 "Done when": kill an instance mid-request (SIGKILL): its concurrency slots are free again
 * within the lease TTL. Instance A is a real `node dist/src/main.js` process relaying two slow
 * requests (they hold both slots of an adaptive key whose limit is 2); B runs in this process on the
 * same Postgres and Redis.
 */
const TTL_SECONDS = 5;

describe('a killed instance leaves no slot taken longer than the lease TTL', () => {
  let fake: FakeProvider | undefined;
  let cluster: Awaited<ReturnType<typeof startGateways>> | undefined;
  let proc: GatewayProcess | undefined;
  afterAll(async () => {
    await proc?.stop();
    await cluster?.close();
    await fake?.close();
  });

  it('SIGKILL mid-request: B sees the key saturated, then free within the TTL', async () => {
    fake = await FakeProvider.start();
    fake.when({ reply: { delayMs: 30_000 } });
    const adminKey = newAdminKey();
    cluster = await startGateways(1, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      KEY_LEASE_TTL_SECONDS: String(TTL_SECONDS),
      ADAPTIVE_INITIAL_LIMIT: '2',
    });
    const b = cluster.gateways[0]!;
    const { providerId } = await seedProvider(
      adminClient(b.url, adminKey),
      { name: 'slow', base_url: fake.baseUrl, models: ['gpt-4o-mini'] },
      [{ label: 'adaptive', key: 'sk-slow-1' }],
    );

    const port = await freePort();
    proc = spawnGateway({ ...cluster.env, PORT: String(port) });
    await waitFor(
      () =>
        fetch(`${proc!.url}/health/live`).then(
          (r) => r.status,
          () => 0,
        ),
      (s) => s === 200,
      30_000,
      100,
    );
    const send = () =>
      fetch(`${proc!.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: 'take your time' }],
        }),
      }).catch(() => undefined);
    void send();
    void send();
    await waitFor(
      () => fake!.inFlight,
      (n) => n === 2,
      10_000,
    );

    const { pool } = services(b);
    const held = await pool.acquire(providerId);
    expect(held.ok ? 'ok' : held.refusal.kind).toBe('saturated');

    proc.proc.kill('SIGKILL');
    await proc.exited;
    const killedAt = Date.now();
    let freeAt = 0;
    while (Date.now() - killedAt < (TTL_SECONDS + 3) * 1000) {
      const r = await pool.acquire(providerId);
      if (r.ok) {
        freeAt = Date.now();
        await pool.report(r.lease, { notSent: true });
        break;
      }
      expect(r.refusal.kind).toBe('saturated');
      await sleep(100);
    }
    console.log(
      `[leases] slots free ${freeAt ? freeAt - killedAt : 'never'} ms after SIGKILL (TTL ${TTL_SECONDS} s)`,
    );
    expect(freeAt).toBeGreaterThan(0);
    expect(freeAt - killedAt).toBeLessThanOrEqual(TTL_SECONDS * 1000 + 250);
    // both slots are back
    const one = await pool.acquire(providerId);
    const two = await pool.acquire(providerId);
    expect([one.ok, two.ok]).toEqual([true, true]);
    for (const r of [one, two]) if (r.ok) await pool.report(r.lease, { notSent: true });
  });
});
