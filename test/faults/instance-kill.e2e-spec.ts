import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import { newApiKey } from '../support/auth.js';
import {
  addProvider,
  chat,
  dropClientConnections,
  openStream,
  pollUntil,
  spawnLive,
  startInstance,
} from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { isolatedEnv, type GatewayProcess, type TestGateway } from '../support/gateway.js';

/**
 * SIGKILL of an instance in the middle of a long stream. The killed instance is a real process
 * (`node dist/src/main.js`); a second instance (in process) on the same Postgres and Redis watches
 * the shared state. KEY_LEASE_TTL_SECONDS = 5 (the smallest value the configuration accepts).
 *
 * Pass criteria: the upstream connection of the dead instance closes ≤ 1 s after the kill; the
 * dead instance's lease is reclaimed (the key's in-flight count, read from the other instance, is 0)
 * within the lease TTL of the kill; a request the other instance queued for that key meanwhile is
 * then served (200) — nobody has to restart anything.
 */
const LEASE_TTL_SECONDS = 5;

describe('SIGKILL of an instance mid-stream (distributed)', () => {
  let fake: FakeProvider;
  let killed: GatewayProcess;
  let survivor: TestGateway;
  let cleanup: () => Promise<void>;
  const adminKey = newApiKey();

  beforeAll(async () => {
    fake = await FakeProvider.start();
    const isolated = await isolatedEnv('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      KEY_LEASE_TTL_SECONDS: String(LEASE_TTL_SECONDS),
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_TIMEOUT_MS: '2000',
    });
    cleanup = isolated.cleanup;
    // the survivor first: it runs the migrations and creates the bootstrap admin
    survivor = await startInstance(isolated.env);
    killed = await spawnLive(isolated.env);
  });
  afterAll(async () => {
    await killed?.stop();
    dropClientConnections(survivor);
    await survivor?.close();
    await fake?.close();
    await cleanup?.();
  });

  it(`the dead instance's lease is reclaimed within KEY_LEASE_TTL_SECONDS (${LEASE_TTL_SECONDS} s) and its key serves again`, async () => {
    const { providerId, keyIds } = await addProvider(
      survivor,
      adminKey,
      fake,
      [{ key: 'sk-kill', max_concurrent: 1 }],
      {
        models: ['kill-model'],
        timeout_ms: 60_000,
      },
    );
    const pool = survivor.app.get(KeyPoolService);
    const inFlight = async () => (await pool.windows(providerId, keyIds))[0]!.inFlight;
    fake.when({
      model: 'kill-model',
      reply: (req) =>
        req.body.messages[0].content === 'long'
          ? { chunkDelayMs: 300, text: Array.from({ length: 80 }, (_, i) => `w${i}`).join(' ') }
          : {},
    });

    const res = await openStream(killed.url, adminKey, 'long', { model: 'kill-model' });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    expect(await inFlight()).toBe(1); // the other instance sees the dead-to-be instance's slot

    killed.proc.kill('SIGKILL');
    const killedAt = Date.now();
    const killedAtPerf = performance.now();
    await killed.exited;
    reader.cancel().catch(() => undefined);
    // the survivor wants the same key (max_concurrent 1): it waits for the slot
    const waiting = chat(survivor.url, adminKey, 'after-kill', { model: 'kill-model' });

    const { value: upstream } = await pollUntil(
      () => {
        const r = fake.requests.find((x) => x.body.messages[0].content === 'long');
        return r?.endedAt !== undefined ? r : false;
      },
      { timeoutMs: 3000, intervalMs: 10, what: 'the dead instance’s upstream connection to close' },
    );
    expect(upstream.closedEarly).toBe(true);
    const closedMs = upstream.endedAt! - killedAt;

    const { ms: reclaimedMs } = await pollUntil(async () => (await inFlight()) === 0, {
      timeoutMs: LEASE_TTL_SECONDS * 1000 + 3000,
      intervalMs: 25,
      what: 'the dead instance’s lease to be reclaimed',
    });
    const served = await waiting;
    const servedMs = performance.now() - killedAtPerf;
    console.log(
      `[faults] SIGKILL mid-stream: upstream closed +${closedMs} ms, lease reclaimed +${reclaimedMs.toFixed(0)} ms, ` +
        `queued request on the survivor served +${servedMs.toFixed(0)} ms (status ${served.status})`,
    );
    expect(closedMs).toBeLessThanOrEqual(1000);
    expect(reclaimedMs).toBeLessThanOrEqual(LEASE_TTL_SECONDS * 1000 + 250);
    expect(served.status).toBe(200);
    expect(servedMs).toBeLessThanOrEqual(LEASE_TTL_SECONDS * 1000 + 2500);
    expect(await inFlight()).toBe(0);
  });
});
