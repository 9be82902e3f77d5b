import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RateLimitService } from '../../src/rate-limit/rate-limit.service.js';
import { bearer } from '../support/auth.js';
import { pollUntil } from '../support/cluster.js';
import { LagProxy } from '../support/lag-proxy.js';
import { OwnRedis } from '../support/redis-server.js';
import { startRelay, type RelayFixture } from '../support/relay.js';

/**
 * Redis falls behind a relay flood (distributed, a private redis-server behind a proxy whose
 * client → server direction lags 400 ms: every command reaches Redis 400 ms after it was written,
 * while Redis keeps answering the earlier ones — the limiter's connection is never silent). A relayed
 * call's decision has RATE_LIMIT_TIMEOUT_MS (100 ms) to reach Redis: it is shed, 503
 * rate_limiter_overloaded. An admin read made at the same moment has RATE_LIMIT_ADMIN_TIMEOUT_MS
 * (2 s): Redis decides it (rate-limit headers), 200. Before that variable, the admin read was shed
 * with the relay traffic.
 */

const LAG_MS = 400;
/** The lag grows to LAG_MS over this long, so the replies to earlier commands keep coming. */
const RAMP_MS = 1000;
/** Relay calls in flight all the time (the flood). */
const FLOOD = 3;
/**
 * A console read is sent every PACE_MS whatever the others do (open loop): the limiter's connection
 * then gets a reply about every PACE_MS, lag or not — never silent for 100 ms. Closed loops (each
 * waiting for its answer) fall into step and leave silent gaps as long as the lag.
 */
const PACE_MS = 15;
const ROUNDS = 5;

interface Answer {
  status: number;
  code: string | undefined;
  limited: boolean;
}

async function call(url: string, key: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, { ...init, headers: bearer(key) });
  const text = await res.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
  } catch {
    code = undefined;
  }
  // decided by Redis (not by the failure mode, which adds no rate-limit headers)
  return { status: res.status, code, limited: res.headers.get('x-ratelimit-limit') !== null };
}

describe('the limiter sheds relayed calls, not the admin API, when Redis falls behind', () => {
  let redis: OwnRedis;
  let proxy: LagProxy;
  let relay: RelayFixture;

  beforeAll(async () => {
    redis = await OwnRedis.start();
    proxy = await LagProxy.start(redis.url);
    relay = await startRelay('distributed', {
      env: {
        REDIS_URL: proxy.url(redis.url),
        RATE_LIMIT_KEY_RPM: '1000000',
        RATE_LIMIT_USER_RPM: '1000000',
        RATE_LIMIT_IP_RPM: '1000000',
        RATE_LIMIT_TIMEOUT_MS: '100',
        RATE_LIMIT_ADMIN_TIMEOUT_MS: '2000',
      },
    });
  });

  afterAll(async () => {
    await relay?.close();
    await proxy?.close();
    await redis?.stop();
  });

  it('a relay request made while Redis lags is 503 rate_limiter_overloaded; an admin read at the same moment is 200', async () => {
    const { gw, adminKey } = relay;
    const chat = (): Promise<Answer> =>
      call(`${gw.url}/v1/chat/completions`, adminKey, {
        method: 'POST',
        body: JSON.stringify({ model: relay.fake.models[0], messages: [{ role: 'user', content: 'hi' }] }),
      });
    const adminRead = (): Promise<Answer> => call(`${gw.url}/api/admin/users`, adminKey);
    const me = (): Promise<Answer> => call(`${gw.url}/api/me`, adminKey);

    // healthy: both decided by Redis
    expect(await chat()).toMatchObject({ status: 200, limited: true });
    expect(await adminRead()).toMatchObject({ status: 200, limited: true });

    const svc = gw.app.get(RateLimitService);
    const stalls = (): number => svc.stats().unavailableByCause.silent ?? 0;
    const pairs: [Answer, Answer][] = [];
    let seen: { relay: Answer; admin: Answer } | null = null;
    // A round: Redis healthy, then the lag ramps up under the flood; pairs of a relay call and an
    // admin read made at the same moment, until one finds the relay call shed and the admin read
    // decided by Redis (its verdict, not the failure mode's). A round in which the connection was
    // found silent anyway (a loaded machine can pause this process for 100 ms) ends: once stalled,
    // every decision meets the failure mode until a probe gets through, which shows nothing here.
    for (let round = 0; round < ROUNDS && !seen; round++) {
      await proxy.lag(0);
      await pollUntil(async () => (await me()).limited, {
        timeoutMs: 20_000,
        what: 'decisions by Redis again',
      });
      const stalled = stalls();
      let on = true;
      const inFlight = new Set<Promise<unknown>>();
      const pacer = setInterval(() => {
        const p = me().catch(() => undefined);
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
      }, PACE_MS);
      const flood = Array.from({ length: FLOOD }, async () => {
        while (on) await chat();
      });
      await proxy.lag(LAG_MS, RAMP_MS);
      try {
        for (let attempt = 0; attempt < 30 && !seen && stalls() === stalled; attempt++) {
          const [r, a] = await Promise.all([chat(), adminRead()]);
          pairs.push([r, a]);
          const adminDecided = a.limited || a.code === 'rate_limiter_overloaded';
          if (r.code === 'rate_limiter_overloaded' && adminDecided) seen = { relay: r, admin: a };
        }
      } finally {
        on = false;
        clearInterval(pacer);
        await proxy.lag(0);
        await Promise.all([...flood, ...inFlight]);
      }
    }
    expect(
      seen,
      `a relay call shed while an admin read was decided: ${JSON.stringify(pairs)}`,
    ).not.toBeNull();
    expect(seen!.relay).toMatchObject({ status: 503, code: 'rate_limiter_overloaded' });
    expect(seen!.admin).toMatchObject({ status: 200, limited: true });
    expect(svc.stats().shed).toBeGreaterThan(0);
  });
});
