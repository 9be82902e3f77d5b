import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import { RelayDispatcher } from '../../src/relay/dispatcher.js';
import { LeaseKeeper } from '../../src/relay/stages/lease-keeper.js';
import { AtomicStore } from '../../src/state/atomic-store.js';
import { PubSub } from '../../src/state/pub-sub.js';
import { newApiKey } from '../support/auth.js';
import {
  addProvider,
  chat,
  CLUSTER_REPEAT,
  dropClientConnections,
  pollUntil,
  type RelayAnswer,
} from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { startGateways, type TestGateway } from '../support/gateway.js';
import { TEST_REDIS_URL } from '../support/services.js';

/** Every key this cluster's Redis commands named (MONITOR, filtered to the cluster's prefix). */
async function watchKeys(prefix: string): Promise<{ keys: Set<string>; stop(): Promise<void> }> {
  const client = new Redis(TEST_REDIS_URL);
  const monitor = await client.monitor();
  const keys = new Set<string>();
  monitor.on('monitor', (_time: string, args: string[]) => {
    for (const a of args) if (typeof a === 'string' && a.startsWith(`${prefix}:`)) keys.add(a);
  });
  return {
    keys,
    stop: async () => {
      monitor.disconnect();
      client.disconnect();
      await new Promise((r) => setTimeout(r, 10));
    },
  };
}

/**
 * Priority order is global: one upstream slot (max_concurrent 1), requests queued on three different
 * instances. Once the slot frees, the upstream sees every urgent before every high before every low,
 * FIFO within a level, whatever instance each one was queued on — and never two at once.
 */
describe('three instances, one upstream slot: strict priority, FIFO within a level', () => {
  let cluster: Awaited<ReturnType<typeof startGateways>>;
  let gws: TestGateway[];
  let fake: FakeProvider;
  let providerId: string;
  const adminKey = newApiKey();

  beforeAll(async () => {
    fake = await FakeProvider.start();
    cluster = await startGateways(3, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_TIMEOUT_MS: '2000',
    });
    gws = cluster.gateways;
    ({ providerId } = await addProvider(gws[0]!, adminKey, fake, [
      { key: 'sk-one-slot', max_concurrent: 1 },
    ]));
    // warm every instance (credential and provider caches)
    for (const gw of gws) expect((await chat(gw.url, adminKey, 'warm-up')).status).toBe(200);
  });
  afterAll(async () => {
    dropClientConnections(...(gws ?? []));
    await cluster?.close();
    await fake?.close();
  });

  it(
    `9 low, then 6 high, then 3 urgent queued round-robin on A, B, C → upstream order urgent×3, high×6, low×9, one at a time (${CLUSTER_REPEAT}×)`,
    { timeout: 60_000 + CLUSTER_REPEAT * 15_000 },
    async () => {
      const depth = async () =>
        Object.values(await gws[0]!.app.get(RelayDispatcher).depth(providerId)).reduce((a, b) => a + b, 0);
      const prefix = cluster.env.REDIS_PREFIX!;
      for (let round = 0; round < CLUSTER_REPEAT; round++) {
        // The first round also records every key the cluster's commands name (Redis MONITOR).
        const watch = round === 0 ? await watchKeys(prefix) : null;
        fake.reset();
        fake.when({ reply: { delayMs: 15 } });
        const grantedBefore = gws.map((g) => g.app.get(RelayDispatcher).granted);
        // The only slot is held by a lease taken directly from the pool on A (a request in flight
        // whose end the test decides), so everything below queues in a known order.
        const pool = gws[0]!.app.get(KeyPoolService);
        const held = await pool.acquire(providerId);
        if (!held.ok) throw new Error(`could not take the slot: ${held.refusal.message}`);

        const plan = [
          ...Array.from({ length: 9 }, (_, i) => ({ tag: `low-${i}`, priority: 'low' })),
          ...Array.from({ length: 6 }, (_, i) => ({ tag: `high-${i}`, priority: 'high' })),
          ...Array.from({ length: 3 }, (_, i) => ({ tag: `urgent-${i}`, priority: 'urgent' })),
        ];
        const calls: Promise<RelayAnswer>[] = [];
        for (const [i, step] of plan.entries()) {
          calls.push(chat(gws[i % 3]!.url, adminKey, step.tag, { priority: step.priority }));
          await pollUntil(async () => (await depth()) >= i + 1, {
            timeoutMs: 5000,
            intervalMs: 5,
            what: `${step.tag} to be queued`,
          });
        }
        expect(fake.requests).toHaveLength(0);
        await pool.report(held.lease, { notSent: true });
        gws[0]!.app.get(RelayDispatcher).capacityReleased(providerId);

        const answers = await Promise.all(calls);
        expect(answers.map((a) => a.status)).toEqual(Array(plan.length).fill(200));
        const order = fake.requests.map((r) => r.body.messages[0].content as string);
        expect(order).toEqual([
          ...Array.from({ length: 3 }, (_, i) => `urgent-${i}`),
          ...Array.from({ length: 6 }, (_, i) => `high-${i}`),
          ...Array.from({ length: 9 }, (_, i) => `low-${i}`),
        ]);
        expect(fake.maxInFlight).toBe(1);
        // queued on every instance, reported waiting time on every answer
        expect(answers.every((a) => Number(a.headers.get('x-floodgate-queue-ms')) >= 0)).toBe(true);
        const granted = gws.map((g, i) => g.app.get(RelayDispatcher).granted - grantedBefore[i]!);
        expect(granted.reduce((a, b) => a + b, 0)).toBe(plan.length);
        console.log(`[cluster] priority round ${round + 1}: grants per instance ${granted.join('/')}`);
        expect(await depth()).toBe(0);
        if (watch) {
          await watch.stop();
          const seen = [...watch.keys];
          // The queue lives in Floodgate's own keys, and admission read and popped them…
          expect(seen).toContain(`${prefix}:fq:{${providerId}}:wait`);
          expect(seen).toContain(`${prefix}:fq:{${providerId}}:jobs`);
          // …and nothing touched anything under BullMQ's layout.
          expect(seen.filter((k) => k.includes(':bull:') || k.endsWith(':prioritized'))).toEqual([]);
        }
      }
    },
  );
});

/**
 * The slot's releaser hands it to the head of the queue, whichever instance queued it: a request
 * queued on A is granted by B when B frees the slot, with no dispatch step on A.
 */
describe('two instances, one upstream slot: the releasing instance hands its slot over', () => {
  let cluster: Awaited<ReturnType<typeof startGateways>>;
  let gws: TestGateway[];
  let fake: FakeProvider;
  let providerId: string;
  const adminKey = newApiKey();

  beforeAll(async () => {
    fake = await FakeProvider.start();
    cluster = await startGateways(2, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
    });
    gws = cluster.gateways;
    ({ providerId } = await addProvider(gws[0]!, adminKey, fake, [
      { key: 'sk-one-slot', max_concurrent: 1 },
    ]));
    for (const gw of gws) expect((await chat(gw.url, adminKey, 'warm-up')).status).toBe(200);
  });
  afterAll(async () => {
    dropClientConnections(...(gws ?? []));
    await cluster?.close();
    await fake?.close();
  });

  it('a request queued on A is granted by B, the instance that frees the slot', async () => {
    const [a, b] = gws as [TestGateway, TestGateway];
    fake.reset();
    const poolB = b.app.get(KeyPoolService);
    const held = await poolB.acquire(providerId);
    if (!held.ok) throw new Error(`could not take the slot: ${held.refusal.message}`);
    const call = chat(a.url, adminKey, 'queued-on-a', { priority: 'normal' });
    const depth = async () =>
      Object.values(await a.app.get(RelayDispatcher).depth(providerId)).reduce((x, y) => x + y, 0);
    await pollUntil(async () => (await depth()) === 1, {
      timeoutMs: 5000,
      intervalMs: 5,
      what: 'the job to queue',
    });
    // B hears of the contention (A announces it when its request queues).
    await pollUntil(() => b.app.get(RelayDispatcher).isContended(providerId), {
      timeoutMs: 2000,
      intervalMs: 5,
      what: 'B to hear of the contention',
    });
    const before = [a.app.get(RelayDispatcher).granted, b.app.get(RelayDispatcher).granted];
    await poolB.report(held.lease, { notSent: true });
    b.app.get(RelayDispatcher).capacityReleased(providerId);
    const answer = await call;
    expect(answer.status).toBe(200);
    expect(fake.requests.map((r) => r.body.messages[0].content)).toEqual(['queued-on-a']);
    expect(b.app.get(RelayDispatcher).granted - before[1]!).toBe(1);
    expect(a.app.get(RelayDispatcher).granted - before[0]!).toBe(0);
    expect(await depth()).toBe(0);
  });

  /**
   * What the hand-off costs, by the order of events rather than by timing: B's release sends the
   * report and, right behind it on the same connection, the dispatch step (no wait for the report's
   * answer in between); the dispatch script publishes A's grant itself, so B publishes nothing.
   * Slot freed → A granted = one pipelined pair of scripts from B and one message from Redis to A.
   */
  it('releasing a slot for a request queued on another instance: dispatch pipelined behind the report, grant published by the store', async () => {
    const [a, b] = gws as [TestGateway, TestGateway];
    fake.reset();
    const poolB = b.app.get(KeyPoolService);
    const held = await poolB.acquire(providerId);
    if (!held.ok) throw new Error(`could not take the slot: ${held.refusal.message}`);
    const call = chat(a.url, adminKey, 'queued-on-a-2', { priority: 'normal' });
    const depth = async () =>
      Object.values(await a.app.get(RelayDispatcher).depth(providerId)).reduce((x, y) => x + y, 0);
    await pollUntil(async () => (await depth()) === 1, {
      timeoutMs: 5000,
      intervalMs: 5,
      what: 'the job to queue',
    });
    await pollUntil(() => b.app.get(RelayDispatcher).isContended(providerId), {
      timeoutMs: 2000,
      intervalMs: 5,
      what: 'B to hear of the contention',
    });

    const events: string[] = [];
    const store = b.app.get(AtomicStore);
    const run = store.run.bind(store);
    const pubsub = b.app.get(PubSub);
    const publish = pubsub.publish.bind(pubsub);
    store.run = ((script, keys, args) => {
      events.push(`send ${script.name}`);
      const p = run(script, keys, args);
      void p.then(
        () => events.push(`answer ${script.name}`),
        () => undefined,
      );
      return p;
    }) as typeof store.run;
    pubsub.publish = (channel, message) => {
      events.push(`publish ${channel.split(':').slice(0, 2).join(':')}`);
      return publish(channel, message);
    };
    try {
      await b.app.get(LeaseKeeper).release(held.lease, { notSent: true });
      const answer = await call;
      expect(answer.status).toBe(200);
    } finally {
      // own properties shadowing the prototype's: deleting them restores the originals
      delete (store as Partial<AtomicStore>).run;
      delete (pubsub as Partial<PubSub>).publish;
    }
    // the report is KeyPool's release script (with Adaptive's contribution when it carries an answer)
    const hand = events.filter((e) => /keypool-release|keypool-select|publish relay:grant/.test(e));
    expect(hand[0]).toMatch(/^send keypool-release/);
    expect(hand[1]).toMatch(/^send keypool-select\+queue/);
    expect(hand).not.toContain('publish relay:grant');
    expect(fake.requests.map((r) => r.body.messages[0].content)).toEqual(['queued-on-a-2']);
    expect(await depth()).toBe(0);
  });

  it('a published grant whose request is gone gives its slot back', async () => {
    const [a, b] = gws as [TestGateway, TestGateway];
    const poolB = b.app.get(KeyPoolService);
    const held = await poolB.acquire(providerId);
    if (!held.ok) throw new Error(`could not take the slot: ${held.refusal.message}`);
    expect((await poolB.acquire(providerId)).ok).toBe(false);
    const { leaseId, keyId, acquiredAtMs, inFlight } = held.lease;
    await b.app.get(PubSub).publish(
      `relay:grant:${a.app.get(RelayDispatcher).instanceId}`,
      JSON.stringify({
        jobId: 'nobody-waits',
        grant: { keyId, leaseId, at: acquiredAtMs, inFlight, providerId },
      }),
    );
    const back: (typeof held.lease)[] = [];
    await pollUntil(
      async () => {
        const r = await poolB.acquire(providerId);
        if (r.ok) back.push(r.lease);
        return r.ok;
      },
      { timeoutMs: 3000, intervalMs: 20, what: 'the slot to come back' },
    );
    for (const lease of back) await poolB.report(lease, { notSent: true });
  });
});
