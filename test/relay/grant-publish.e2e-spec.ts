import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  composeInputs,
  selectionInputs,
  selectionScript,
  type SelectionResult,
} from '../../src/key-pool/infrastructure/key-selection.script.js';
import {
  ALREADY_DISPATCHED,
  combineGates,
  decodeGrantBox,
  GRANT_PUBLISHED,
  grantBoxKey,
  QUEUE_GATE,
  QueueMode,
  readGrantBoxScript,
} from '../../src/relay/admission-gates.js';
import { MemoryAtomicStore, RedisAtomicStore, type AtomicStore } from '../../src/state/atomic-store.js';
import { decodePopped, queueKeys, StorePriorityQueue } from '../../src/state/priority-queue.js';
import { RedisPubSub } from '../../src/state/pub-sub.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * The dispatch step grants a job queued by another instance itself: QUEUE_GATE's commit publishes
 * the lease on that instance's grant channel (Redis), so the dispatching instance is no hop on the
 * way. Its own jobs, and every job in process, come back to the caller as before.
 */

/** Waits (10 s cap) until `heard` has n messages: pub/sub arrives on another connection, in its own time. */
async function untilHeard(heard: string[], n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (heard.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}
describe('QUEUE_GATE dispatch: the grant of another instance’s job is published by the script', () => {
  const prefix = uniqueName('fggrant');
  let command: Redis;
  let subscriber: Redis;
  let redis: RedisAtomicStore;
  let pubsub: RedisPubSub;

  beforeAll(() => {
    command = new Redis(TEST_REDIS_URL);
    subscriber = new Redis(TEST_REDIS_URL);
    redis = new RedisAtomicStore(command, prefix);
    pubsub = new RedisPubSub(command, subscriber, prefix);
  });
  afterAll(async () => {
    await dropRedisPrefix(prefix);
    command?.disconnect();
    subscriber?.disconnect();
  });

  const script = selectionScript(combineGates([QUEUE_GATE]));

  async function dispatch(
    store: AtomicStore,
    providerId: string,
    channel: string,
    instance: string,
    step: { leaseId: string; box?: string } = { leaseId: randomUUID() },
  ) {
    const leaseId = step.leaseId;
    const [wait, jobs, , tags] = queueKeys(providerId);
    const inputs = composeInputs(
      {
        keys: [wait, jobs, step.box ?? grantBoxKey(providerId), tags],
        args: [1, QueueMode.dispatch, channel, instance],
      },
      selectionInputs(
        providerId,
        [
          {
            keyId: 'k1',
            priority: 1,
            maxRpm: null,
            maxTpm: null,
            concurrency: { kind: 'fixed', limit: 2 },
            dbCooldownUntilMs: 0,
          },
        ],
        leaseId,
        30_000,
        86_400_000,
      ),
    );
    const r = await store.run<SelectionResult>(script, inputs.keys, inputs.args);
    return { r, leaseId };
  }

  it('a job of another instance: published with the lease, output marked; own job: handed back unmarked', async () => {
    const providerId = randomUUID();
    const queue = new StorePriorityQueue(redis);
    await queue.add(providerId, { id: 'job-b', priority: 3, data: { instance: 'inst-b', requestId: 'r1' } });
    await queue.add(providerId, { id: 'job-a', priority: 3, data: { instance: 'inst-a', requestId: 'r2' } });
    const heard: string[] = [];
    const unsubscribe = await pubsub.subscribe('relay:grant:inst-b', (m) => heard.push(m));
    try {
      const channel = pubsub.wireChannel('relay:grant:');
      expect(channel).toBe(`${prefix}:relay:grant:`);

      const first = await dispatch(redis, providerId, channel, 'inst-a');
      expect(first.r[0]).toBe(1);
      const out = first.r[4] as string;
      expect(out.startsWith(GRANT_PUBLISHED)).toBe(true);
      expect(decodePopped(out.slice(GRANT_PUBLISHED.length))).toMatchObject({ id: 'job-b' });
      await untilHeard(heard, 1);
      expect(heard).toHaveLength(1);
      const message = JSON.parse(heard[0]!) as { jobId: string; grant: Record<string, unknown> };
      expect(message.jobId).toBe('job-b');
      expect(message.grant).toMatchObject({ keyId: 'k1', leaseId: first.leaseId, inFlight: 1, providerId });
      expect(Math.abs((message.grant.at as number) - Date.now())).toBeLessThan(5_000);

      // the dispatching instance's own job: no message, the job comes back to it
      const second = await dispatch(redis, providerId, channel, 'inst-a');
      expect(second.r[0]).toBe(1);
      expect((second.r[4] as string).startsWith(GRANT_PUBLISHED)).toBe(false);
      expect(decodePopped(second.r[4] as string)).toMatchObject({ id: 'job-a' });
      await new Promise((r) => setTimeout(r, 50));
      expect(heard).toHaveLength(1);
    } finally {
      await unsubscribe();
    }
  });

  it('without a grant channel (and always in process) the job comes back to the caller, unmarked', async () => {
    const memory = new MemoryAtomicStore();
    try {
      for (const store of [redis, memory] as AtomicStore[]) {
        const providerId = randomUUID();
        const queue = new StorePriorityQueue(store);
        await queue.add(providerId, {
          id: 'job-b',
          priority: 2,
          data: { instance: 'inst-b', requestId: 'r' },
        });
        const channel = store === memory ? `${prefix}:relay:grant:` : '';
        const { r } = await dispatch(store, providerId, channel, 'inst-a');
        expect(r[0]).toBe(1);
        expect(decodePopped(r[4] as string)).toMatchObject({ id: 'job-b' });
      }
    } finally {
      memory.close();
    }
  });

  it('the same step run again (its reply lost) answers with what the first run did: nothing popped, taken or published twice', async () => {
    const memory = new MemoryAtomicStore();
    try {
      for (const store of [redis, memory] as AtomicStore[]) {
        const providerId = randomUUID();
        const queue = new StorePriorityQueue(store);
        for (const [id, inst] of [
          ['job-b', 'inst-b'],
          ['job-a', 'inst-a'],
          ['job-c', 'inst-a'],
        ] as const)
          await queue.add(providerId, { id, priority: 2, data: { instance: inst, requestId: id } });
        const heard: string[] = [];
        const unsubscribe = await pubsub.subscribe('relay:grant:inst-b', (m) => heard.push(m));
        const channel = store === redis ? pubsub.wireChannel('relay:grant:') : '';
        try {
          // a job of another instance (published when on Redis), then one of this instance
          for (const expected of ['job-b', 'job-a']) {
            const step = { leaseId: randomUUID(), box: grantBoxKey(providerId, randomUUID()) };
            const first = await dispatch(store, providerId, channel, 'inst-a', step);
            expect(first.r[0]).toBe(1);
            const out = first.r[4] as string;
            const again = await dispatch(store, providerId, channel, 'inst-a', step);
            expect(again.r[0]).toBe(0);
            const code = again.r[1] as string;
            expect(code.startsWith(`gate:${ALREADY_DISPATCHED}`)).toBe(true);
            const box = decodeGrantBox(code.slice(`gate:${ALREADY_DISPATCHED}`.length));
            expect(box).toMatchObject({
              keyId: 'k1',
              leaseId: step.leaseId,
              inFlight: first.r[2],
              output: out,
            });
            expect(box!.at).toBe(first.r[3]);
            expect(decodePopped(out.replace(GRANT_PUBLISHED, ''))).toMatchObject({ id: expected });
            // what a dispatcher whose reply was lost reads: the same record
            expect(decodeGrantBox((await store.run(readGrantBoxScript, [step.box], []))!)).toEqual(box);
          }
          // the repeats popped nothing: job-c is still waiting; two leases taken in all
          expect(await queue.counts(providerId, [2])).toEqual({ 2: 1 });
          const next = await dispatch(store, providerId, channel, 'inst-a');
          expect(next.r[0]).toBe(0); // the key's 2 slots are both held: the repeats took none
          expect(next.r[1]).toBe('saturated');
          // the message comes on the subscriber's connection, whenever it does: waited for, not
          // assumed to be there after a fixed 50 ms (then a quiet period, for a second one)
          if (store === redis) await untilHeard(heard, 1);
          await new Promise((r) => setTimeout(r, 50));
          expect(heard).toHaveLength(store === redis ? 1 : 0);
        } finally {
          await unsubscribe();
        }
      }
    } finally {
      memory.close();
    }
  });
});
