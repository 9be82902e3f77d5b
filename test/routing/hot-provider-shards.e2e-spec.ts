import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RelayDispatcher } from '../../src/relay/dispatcher.js';
import { bearer, createUserWithKey, newApiKey } from '../support/auth.js';
import {
  addProvider,
  chat,
  dropClientConnections,
  pollUntil,
  startInstance,
  type UpstreamKeySpec,
} from '../support/cluster.js';
import { FakeHold, FakeProvider } from '../support/fake-provider.js';
import { getJson, type TestGateway } from '../support/gateway.js';
import { OwnRedisCluster } from '../support/redis-cluster.js';
import { createTestDatabase, uniqueName } from '../support/services.js';

/**
 * A hot provider sharded by hand (docs/scaling.md, "Hot provider"): S providers on the same upstream,
 * its keys split between them, behind ONE route whose targets share tier 1 with equal weights.
 * Clients call the route's model name. Each provider's admission state is its own hash slot
 * (`{<provider id>}`), so on a Redis Cluster the shards' selection, gates, queue and answer path
 * run on different masters, while a request's client limits are still decided once (the first
 * store step of the route), so they stay exact across the shards. Real three-master cluster, two
 * gateway instances, one fake upstream.
 */

const ROUTE = 'hot-chat';
const KEY_RPM = 15;
const BURST = 120;

/** The master (host:port) serving each slot, from CLUSTER SLOTS. */
async function slotOwners(redis: Cluster): Promise<(slot: number) => string> {
  const ranges = await redis.cluster('SLOTS');
  return (slot) => {
    const r = ranges.find(([from, to]) => slot >= from && slot <= to);
    if (!r) throw new Error(`no master serves slot ${slot}`);
    const [host, port] = r[2]!;
    return `${host}:${port}`;
  };
}

describe('a hot provider sharded into providers behind a weighted route, on a Redis Cluster', () => {
  let cluster: OwnRedisCluster;
  let redis: Cluster;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let gateways: TestGateway[] = [];
  let fake: FakeProvider;
  const adminKey = newApiKey();
  const prefix = uniqueName('fghot');

  /** The slot of a provider's key-pool state (every key of the provider shares it). */
  const providerSlot = async (providerId: string) =>
    Number(await redis.cluster('KEYSLOT', `${prefix}:kp:{${providerId}}:seq`));

  /** Which masters hold keys of the provider's state (`kp:{p}…`), by SCAN on every master. */
  async function holders(providerId: string): Promise<string[]> {
    const found: string[] = [];
    for (const node of redis.nodes('master')) {
      const [, keys] = await node.scan(0, 'MATCH', `${prefix}:kp:{${providerId}}:*`, 'COUNT', 100_000);
      if (keys.length > 0) found.push(`${node.options.host}:${node.options.port}`);
    }
    return found;
  }

  /**
   * Creates S shard providers of the fake upstream, each on a master of its own: provider ids are
   * random, so a shard that lands on a master another shard already uses is deleted and made again
   * (what an operator does too: docs/scaling.md).
   */
  async function shards(tag: string, keysOf: (s: number) => UpstreamKeySpec[], s: number) {
    const owner = await slotOwners(redis);
    const made: { providerId: string; name: string; keys: string[]; master: string }[] = [];
    for (let i = 0; i < s; i++) {
      for (let attempt = 0; ; attempt++) {
        const name = `${tag}-shard-${i + 1}-${attempt}`;
        const keys = keysOf(i);
        const { providerId } = await addProvider(gateways[0]!, adminKey, fake, keys, { name });
        const master = owner(await providerSlot(providerId));
        if (!made.some((m) => m.master === master)) {
          made.push({ providerId, name, keys: keys.map((k) => k.key), master });
          break;
        }
        if (attempt > 30) throw new Error('could not place the shards on distinct masters');
        const del = await fetch(`${gateways[0]!.url}/api/admin/providers/${providerId}`, {
          method: 'DELETE',
          headers: bearer(adminKey, false),
        });
        expect(del.status).toBe(204);
      }
    }
    return made;
  }

  async function route(model: string, providerIds: string[], targetModels?: string[]) {
    const r = await getJson(`${gateways[0]!.url}/api/admin/routes`, {
      method: 'POST',
      headers: bearer(adminKey),
      body: JSON.stringify({
        model,
        targets: providerIds.map((id, i) => ({
          provider_id: id,
          model: targetModels?.[i] ?? 'gpt-4o-mini',
          weight: 1,
          tier: 1,
        })),
      }),
    });
    expect(r.status).toBe(201);
    return r.body as { id: string; targets: { provider_id: string }[] };
  }

  beforeAll(async () => {
    cluster = await OwnRedisCluster.start();
    redis = cluster.client();
    db = await createTestDatabase();
    fake = await FakeProvider.start();
    const env: Record<string, string> = {
      NODE_ENV: 'test',
      LOG_LEVEL: process.env.CLUSTER_LOG_LEVEL ?? 'error',
      LOG_FORMAT: 'json',
      ENCRYPTION_KEYS: `test1:${Buffer.alloc(32, 7).toString('base64')}`,
      HOST: '127.0.0.1',
      SHUTDOWN_TIMEOUT_MS: '10000',
      DATABASE_URL: db.url,
      REDIS_CLUSTER_NODES: cluster.addresses.join(','),
      REDIS_PREFIX: prefix,
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_IP_RPM: '1000000',
      // a loaded test machine must not turn slow replies into failure-mode answers
      RATE_LIMIT_TIMEOUT_MS: '2000',
    };
    gateways = [await startInstance(env), await startInstance(env)];
    await redis.cluster('SLOTS'); // the client knows the slot map
  }, 120_000);

  afterAll(async () => {
    dropClientConnections(...gateways);
    await Promise.all(gateways.map((g) => g.close()));
    await fake?.close();
    redis?.disconnect();
    await cluster?.stop();
    await db?.drop();
  }, 60_000);

  it('the route serves through both shards, whose state lives in different slots on different masters', async () => {
    const made = await shards('hot', (s) => [{ key: `sk-hot-${s + 1}a` }, { key: `sk-hot-${s + 1}b` }], 2);
    const created = await route(
      ROUTE,
      made.map((m) => m.providerId),
    );
    // the providers the route's targets point at, as stored
    const targetProviders = created.targets.map((t) => t.provider_id);
    const { key } = await createUserWithKey(gateways[0]!, adminKey, 'user');
    fake.reset();
    const served = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const a = await chat(gateways[i % 2]!.url, key, `hot-${i}`, { model: ROUTE });
      expect(a.status, a.text).toBe(200);
      expect(a.body.model).toBe(ROUTE);
      const t = a.headers.get('x-floodgate-route-target')!;
      served.set(t, (served.get(t) ?? 0) + 1);
    }
    // the targets' admission state: two slots, each held by one master, not the same one
    const slots = await Promise.all(targetProviders.map((p) => providerSlot(p)));
    expect(new Set(slots).size).toBe(2);
    const held = await Promise.all(targetProviders.map((p) => holders(p)));
    expect(held.map((h) => h.length)).toEqual([1, 1]);
    expect(held[0]![0]).not.toBe(held[1]![0]);
    expect(held.map((h) => h[0])).toEqual(made.map((m) => m.master));
    // both shards served (equal weights: each ~half of 40; one shard getting none has p = 2^-39)
    expect([...served.keys()].sort()).toEqual(made.map((m) => `${m.name}/gpt-4o-mini`).sort());
    // every upstream key of every shard got traffic (the shard's own key selection spreads it)
    for (const k of made.flatMap((m) => m.keys)) expect(fake.requestsFor(k).length, k).toBeGreaterThan(0);
  });

  it(`a burst at a client's limit through the route admits exactly the limit (${KEY_RPM}), served by both shards`, async () => {
    const { key, keyId } = await createUserWithKey(gateways[0]!, adminKey, 'user', {
      key: { limits: { rpm: KEY_RPM } },
    });
    const answers = await Promise.all(
      Array.from({ length: BURST }, (_, i) =>
        chat(gateways[i % 2]!.url, key, `burst-${i}`, { model: ROUTE }),
      ),
    );
    const ok = answers.filter((a) => a.status === 200);
    const limited = answers.filter((a) => a.status === 429);
    expect(answers.filter((a) => a.status !== 200 && a.status !== 429).map((a) => a.text)).toEqual([]);
    expect(ok.length).toBe(KEY_RPM);
    expect(limited.length).toBe(BURST - KEY_RPM);
    for (const a of limited) expect(a.body.error.code).toBe('rate_limit_exceeded');
    // the count is one window, under the client key's own tag, whichever shard served
    expect(await redis.zcard(`${prefix}:rl:{key:${keyId}}:key:sw`)).toBe(KEY_RPM);
    // 15 admitted over two equal-weight shards: all on one has p = 2 · 2^-15
    expect(new Set(ok.map((a) => a.headers.get('x-floodgate-route-target'))).size).toBe(2);
  });

  it('a request finding both shards full waits in both queues and is served by the first shard that frees', async () => {
    const holds = [new FakeHold(), new FakeHold()];
    const made = await shards('wait', (s) => [{ key: `sk-wait-${s + 1}`, max_concurrent: 1 }], 2);
    made.forEach((m, i) => fake.when({ key: m.keys[0]!, reply: { hold: holds[i] } }));
    await route(
      'hot-wait',
      made.map((m) => m.providerId),
    );
    const { key } = await createUserWithKey(gateways[0]!, adminKey, 'user');
    const url = gateways[0]!.url;
    // two requests fill both shards: the second finds the first's shard full and overflows at once
    const first = chat(url, key, 'fill-1', { model: 'hot-wait' });
    await pollUntil(async () => holds[0]!.holding + holds[1]!.holding === 1, {
      timeoutMs: 20_000,
      what: 'one shard busy',
    });
    const second = chat(url, key, 'fill-2', { model: 'hot-wait' });
    await Promise.all([holds[0]!.held(1), holds[1]!.held(1)]);
    // the third waits in both shards' queues at once
    const dispatcher = gateways[0]!.app.get(RelayDispatcher);
    const queued = async (p: string) => Object.values(await dispatcher.depth(p)).reduce((a, b) => a + b, 0);
    const third = chat(url, key, 'third', { model: 'hot-wait' });
    await pollUntil(
      async () => (await queued(made[0]!.providerId)) === 1 && (await queued(made[1]!.providerId)) === 1,
      {
        timeoutMs: 20_000,
        what: 'the third request queued on both shards',
      },
    );
    // shard 2 frees: the third is served there, and its wait on shard 1 is withdrawn
    holds[1]!.release();
    const t = await third;
    expect(t.status, t.text).toBe(200);
    expect(t.headers.get('x-floodgate-route-target')).toBe(`${made[1]!.name}/gpt-4o-mini`);
    await pollUntil(async () => (await queued(made[0]!.providerId)) === 0, {
      timeoutMs: 20_000,
      what: "the third request's wait on shard 1 withdrawn",
    });
    holds[0]!.release();
    const done = await Promise.all([first, second]);
    expect(done.map((a) => a.status)).toEqual([200, 200]);
  });
});
