import { afterEach, describe, expect, it } from 'vitest';
import { RateLimitService } from '../../src/rate-limit/rate-limit.service.js';
import { AdmissionGrants } from '../../src/relay/admission-grants.js';
import { bearer, createUserWithKey } from '../support/auth.js';
import { getJson } from '../support/gateway.js';
import { pollUntil } from '../support/cluster.js';
import { OwnRedis } from '../support/redis-server.js';
import { startRelay, type RelayFixture } from '../support/relay.js';

/**
 * RATE_LIMIT_ADMIN_TIMEOUT_MS keeps the deadline's promise (docs/rate-limit.md "Failure mode"): a
 * decision the gateway gave up on is never counted later, when a frozen Redis wakes up and runs it.
 * A private redis-server is frozen (SIGSTOP) under a gateway with RATE_LIMIT_FAILURE_MODE=closed:
 * - frozen briefly (past RATE_LIMIT_TIMEOUT_MS, within the admin timeout): a relayed call meets the
 *   failure mode (503 rate_limiter_unavailable: Redis silent for 100 ms — unchanged); an admin read
 *   made at the same moment waits for Redis and is decided by it (200) — and counted exactly once;
 * - frozen past the admin timeout: the admin read meets the failure mode too (503), and once Redis
 *   wakes and runs the queued decision, it was not counted.
 */

interface Answer {
  status: number;
  code: string | undefined;
  limited: boolean;
}

async function call(url: string, key: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, { ...init, headers: bearer(key) });
  const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
  return {
    status: res.status,
    code: body.error?.code,
    limited: res.headers.get('x-ratelimit-limit') !== null,
  };
}

describe('the admin deadline under a frozen Redis (failure mode closed)', () => {
  let redis: OwnRedis | undefined;
  let relay: RelayFixture | undefined;

  afterEach(async () => {
    redis?.thaw();
    await relay?.close();
    await redis?.stop();
    relay = undefined;
    redis = undefined;
  });

  async function start(adminTimeoutMs: number) {
    redis = await OwnRedis.start();
    relay = await startRelay('distributed', {
      env: {
        REDIS_URL: redis.url,
        RATE_LIMIT_FAILURE_MODE: 'closed',
        RATE_LIMIT_TIMEOUT_MS: '100',
        RATE_LIMIT_ADMIN_TIMEOUT_MS: String(adminTimeoutMs),
      },
    });
    const { gw, adminKey } = relay;
    // the operator at the console (its own key, so its count is its own) and a relay client
    const consoleUser = await createUserWithKey(gw, adminKey, 'admin');
    const client = await createUserWithKey(gw, adminKey, 'developer');
    const svc = gw.app.get(RateLimitService);
    const adminRead = (): Promise<Answer> => call(`${gw.url}/api/admin/users`, consoleUser.key);
    const chat = (): Promise<Answer> =>
      call(`${gw.url}/v1/chat/completions`, client.key, {
        method: 'POST',
        body: JSON.stringify({ model: relay!.fake.models[0], messages: [{ role: 'user', content: 'hi' }] }),
      });
    /** How many requests the key policy of `keyId` holds now (read by the bootstrap admin). */
    const counted = async (keyId: string): Promise<number> => {
      const res = await getJson(`${gw.url}/api/admin/rate-limits/key:${keyId}`, {
        headers: bearer(adminKey),
      });
      expect(res.status).toBe(200);
      return (res.body.policies as { name: string; current: number }[]).find((p) => p.name === 'key')!
        .current;
    };
    const silent = (): number => svc.stats().unavailableByCause.silent ?? 0;
    /**
     * A local admission grant of a chat's block would admit the next chat without Redis (its units
     * are reserved already, docs/rate-limit.md): wait until it is given back, so the next chat needs Redis.
     */
    const noGrant = async (): Promise<void> => {
      const grants = gw.app.get(AdmissionGrants);
      await pollUntil(() => grants.held() === 0, { timeoutMs: 10_000, what: 'the grant given back' });
      await grants.settled();
    };
    return { consoleUser, client, adminRead, chat, counted, silent, noGrant };
  }

  it('frozen briefly: the relayed call fails closed, the admin read made at the same moment waits and is decided (counted once)', async () => {
    const t = await start(2000);
    expect(await t.adminRead()).toMatchObject({ status: 200, limited: true });
    expect(await t.chat()).toMatchObject({ status: 200, limited: true });
    await t.noGrant();
    const consoleBefore = await t.counted(t.consoleUser.keyId);
    const clientBefore = await t.counted(t.client.keyId);
    const silentBefore = t.silent();

    redis!.freeze();
    const admin = t.adminRead();
    const relayed = t.chat();
    // thaw once the relayed call's decision has given up (Redis silent for RATE_LIMIT_TIMEOUT_MS)
    await pollUntil(() => t.silent() > silentBefore, {
      timeoutMs: 10_000,
      what: 'the relay decision to give up',
    });
    redis!.thaw();

    expect(await relayed).toMatchObject({ status: 503, code: 'rate_limiter_unavailable' });
    expect(await admin).toMatchObject({ status: 200, limited: true });
    // the admin read counted once; the relayed call (given up, then run late by Redis) not at all
    expect(await t.counted(t.consoleUser.keyId)).toBe(consoleBefore + 1);
    expect(await t.counted(t.client.keyId)).toBe(clientBefore);
  });

  it('frozen briefly: an admin reset made at the same moment as a shed relayed call waits for Redis and resets', async () => {
    const t = await start(2000);
    expect(await t.chat()).toMatchObject({ status: 200, limited: true });
    expect(await t.counted(t.client.keyId)).toBeGreaterThan(0);
    await t.noGrant();
    const svc = relay!.gw.app.get(RateLimitService);
    const silentBefore = t.silent();

    // The service call DELETE /api/admin/rate-limits/:subject makes once its guard has passed (the
    // route's own admission already waits up to the admin timeout: a freeze that starts after it is
    // the case this covers).
    redis!.freeze();
    const reset = svc.reset(`key:${t.client.keyId}`).then(
      () => 'reset',
      (err: unknown) => `failed: ${err instanceof Error ? err.message : String(err)}`,
    );
    const relayed = t.chat();
    await pollUntil(() => t.silent() > silentBefore, {
      timeoutMs: 10_000,
      what: 'the relay decision to give up',
    });
    // frozen past RATE_LIMIT_TIMEOUT_MS for the reset's command too, well within the admin timeout
    await new Promise((r) => setTimeout(r, 300));
    redis!.thaw();

    expect(await relayed).toMatchObject({ status: 503, code: 'rate_limiter_unavailable' });
    // with the relay's 100 ms silence threshold this was "failed: The rate limiter cannot reach its store"
    expect(await reset).toBe('reset');
    expect(await t.counted(t.client.keyId)).toBe(0);
  });

  it('frozen past the admin timeout: the admin read fails closed and is never counted when Redis wakes', async () => {
    const t = await start(300);
    expect(await t.adminRead()).toMatchObject({ status: 200, limited: true });
    const consoleBefore = await t.counted(t.consoleUser.keyId);

    redis!.freeze();
    const admin = await t.adminRead(); // waits out its 300 ms, then the failure mode
    redis!.thaw();
    expect(admin).toMatchObject({ status: 503, code: 'rate_limiter_unavailable' });
    // the inspection runs behind the queued decision on the limiter's connection: Redis has run
    // it (past its deadline: STALE, nothing counted) by the time this is answered
    await pollUntil(async () => (await t.adminRead()).status === 200, {
      timeoutMs: 10_000,
      what: 'Redis back',
    });
    expect(await t.counted(t.consoleUser.keyId)).toBe(consoleBefore + 1);
  });
});
