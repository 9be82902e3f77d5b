import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey, newApiKey } from '../support/auth.js';
import {
  addProvider,
  chat,
  dropClientConnections,
  pollUntil,
  spawnLive,
  startInstance,
} from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, isolatedEnv, type GatewayProcess, type TestGateway } from '../support/gateway.js';

/**
 * SIGKILL of an instance while a budgeted request is in flight (docs/spend.md "Budgets", "When a
 * request never settles"). The killed instance is a real process (`node dist/src/main.js`); a second
 * instance (in process) on the same Postgres and Redis serves the same API key afterwards.
 *
 * The key's budget allows exactly one request (the fake provider's answer, 5 completion tokens at 10
 * µ$ each, equals the reservation: BUDGET_DEFAULT_MAX_TOKENS 5, input priced 0). A slow request is
 * admitted on the doomed instance (its reservation holds the whole budget), then the instance is
 * killed: its reservation is never settled. Pass criteria: the survivor refuses the key at first
 * (429 budget_exceeded: the reservation still counts, within its deadline) and admits it again once
 * the reservation's deadline — at most BUDGET_RESERVATION_TTL_MS after its last renewal — has
 * passed; the admin API then shows no reservation left and only the survivor's request spent.
 */
const TTL_MS = 5000;
const PRICE = { input_per_mtok: 0, output_per_mtok: 10, cached_input_per_mtok: 0 };
const COST = 50; // µ$: 5 tokens × 10 µ$

describe('SIGKILL of an instance with a budget reservation in flight (distributed)', () => {
  let fake: FakeProvider;
  let doomed: GatewayProcess;
  let survivor: TestGateway;
  let cleanup: () => Promise<void>;
  const adminKey = newApiKey();

  beforeAll(async () => {
    fake = await FakeProvider.start();
    const isolated = await isolatedEnv('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      BUDGET_RESERVATION_TTL_MS: String(TTL_MS),
      BUDGET_DEFAULT_MAX_TOKENS: '5',
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_IP_RPM: '1000000',
      RATE_LIMIT_TIMEOUT_MS: '2000',
    });
    cleanup = isolated.cleanup;
    // the survivor first: it runs the migrations and creates the bootstrap admin
    survivor = await startInstance(isolated.env);
    doomed = await spawnLive(isolated.env);
  }, 120_000);
  afterAll(async () => {
    await doomed?.stop();
    dropClientConnections(survivor);
    await survivor?.close();
    await fake?.close();
    await cleanup?.();
  });

  it(`the dead instance's reservation is given back within BUDGET_RESERVATION_TTL_MS (${TTL_MS} ms) of its last renewal: 429 budget_exceeded at first, then admitted`, async () => {
    await addProvider(survivor, adminKey, fake, [{ key: 'sk-budget' }], {
      timeout_ms: 120_000,
      pricing: { 'gpt-4o-mini': PRICE },
    });
    fake.when({ reply: (req) => (req.body?.messages?.[0]?.content === 'slow' ? { delayMs: 90_000 } : {}) });
    // both instances price the model (the doomed one learns the new provider through pub/sub)
    const warm = await createUserWithKey(survivor, adminKey, 'user');
    for (const url of [survivor.url, doomed.url])
      await pollUntil(async () => (await chat(url, warm.key, 'warm')).status === 200, {
        timeoutMs: 15_000,
        what: 'both instances serving',
      });
    const u = await createUserWithKey(survivor, adminKey, 'user', {
      key: { budget: { limit_usd: COST / 1_000_000, period: 'day' } } as never,
    });

    // the slow request is admitted on the doomed instance and reaches the provider
    const slow = chat(doomed.url, u.key, 'slow').catch(() => null);
    await pollUntil(() => fake.requests.some((r) => r.body?.messages?.[0]?.content === 'slow'), {
      timeoutMs: 10_000,
      what: 'the slow request upstream',
    });
    // renewals keep it while the instance lives: still held after more than one TTL
    await new Promise((r) => setTimeout(r, TTL_MS + 1000));
    const whileAlive = await chat(survivor.url, u.key, 'while-alive');
    expect(whileAlive.status, JSON.stringify(whileAlive.body)).toBe(429);

    doomed.proc.kill('SIGKILL');
    const killedAt = performance.now();
    await doomed.exited;
    await slow;

    // at first the reservation still counts (its deadline is up to one TTL away)
    const first = await chat(survivor.url, u.key, 'after-kill');
    expect(first.status, JSON.stringify(first.body)).toBe(429);
    expect((first.body as any).error.code).toBe('budget_exceeded');

    // then, once its deadline passed, the next admission gives it back
    const { value: admitted, ms } = await pollUntil(
      async () => {
        const r = await chat(survivor.url, u.key, 'retry');
        if (r.status === 429) return false;
        return r;
      },
      { timeoutMs: TTL_MS + 10_000, intervalMs: 250, what: 'the key admitted again' },
    );
    expect(admitted.status, JSON.stringify(admitted.body)).toBe(200);
    console.log(
      `[faults] budget reservation of a SIGKILLed instance given back +${(performance.now() - killedAt).toFixed(0)} ms after the kill (poll ${ms.toFixed(0)} ms; TTL ${TTL_MS} ms)`,
    );

    // the admin API: nothing reserved; spent = the survivor's request only (the dead one's answer
    // never came: it counts 0)
    const { value: state } = await pollUntil(
      async () => {
        const r = await getJson(`${survivor.url}/api/admin/budgets/key:${u.keyId}`, {
          headers: bearer(adminKey, false),
        });
        return r.body.reservations === 0 ? r : false;
      },
      { timeoutMs: 10_000, what: 'no reservation left' },
    );
    expect(state.status).toBe(200);
    expect(state.body).toMatchObject({ spent_usd: COST / 1_000_000, reserved_usd: 0, remaining_usd: 0 });
  });
});
