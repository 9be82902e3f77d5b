import { Redis, type Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/app-config.js';
import { ClientIpService } from '../../src/rate-limit/client-ip.service.js';
import { requestPolicy, type Policy } from '../../src/rate-limit/policies.js';
import { RateLimitService, type DecisionResult } from '../../src/rate-limit/rate-limit.service.js';
import { keySlot } from '../../src/redis/redis-liveness.js';
import { RedisConnections } from '../../src/redis/redis.module.js';
import { RedisAtomicStore } from '../../src/state/atomic-store.js';
import { pollUntil } from '../support/cluster.js';
import { OwnRedisCluster } from '../support/redis-cluster.js';
import { uniqueName } from '../support/services.js';

/**
 * The limiter's liveness on a Redis Cluster (ClusterLiveness): each command is judged by the
 * connection to the master owning its slot, with the single-Redis rules — a frozen master is
 * "silent" for the decisions that need it (and only those), a busy event loop is never an outage,
 * and a step refused by a frozen master rolls back the steps already committed on the others.
 */
const SILENCE_MS = 200;

describe('rate limiter liveness on a Redis Cluster', () => {
  let cluster: OwnRedisCluster;
  let connections: RedisConnections;
  let limiter: RateLimitService;
  let client: Cluster;
  let reader: Cluster;
  const prefix = uniqueName('fgcv');
  /** A subject whose slot lives on each master, by port. */
  const subjectOn = new Map<number, string>();
  let frozenPid: number | null = null;

  const policy = (subject: string): Policy => requestPolicy('t', 'sliding_window', 1000, 60_000, 0, subject);
  const windowOf = (subject: string) => reader.zcard(`${prefix}:rl:{${subject}}:t:sw`);

  beforeAll(async () => {
    cluster = await OwnRedisCluster.start();
    reader = cluster.client();
    connections = new RedisConnections(
      { nodes: cluster.ports.map((port) => ({ host: '127.0.0.1', port })) },
      prefix,
    );
    const watched = connections.watched('rate-limit', SILENCE_MS);
    client = watched.client as Cluster;
    const config = loadConfig({ RATE_LIMIT_TIMEOUT_MS: String(SILENCE_MS) });
    limiter = new RateLimitService(
      config,
      new RedisAtomicStore(client, prefix),
      new ClientIpService(config),
      { find: () => Promise.resolve(null) },
      watched.liveness,
    );
    await pollUntil(() => client.status === 'ready', {
      timeoutMs: 10_000,
      intervalMs: 20,
      what: 'cluster client ready',
    });
    for (let i = 0; subjectOn.size < cluster.ports.length; i++) {
      const subject = `s:${i}`;
      const owner = client.slots[keySlot(`${prefix}:rl:{${subject}}:t:sw`)]![0]!;
      const port = Number(owner.split(':')[1]);
      if (!subjectOn.has(port)) subjectOn.set(port, subject);
    }
    await limiter.onModuleInit(); // learns the Redis clock: decisions carry deadlines
  });

  afterAll(async () => {
    if (frozenPid) process.kill(frozenPid, 'SIGCONT');
    await connections?.onApplicationShutdown();
    reader?.disconnect();
    await cluster?.stop();
  });

  const kind = (d: DecisionResult) => (d.kind === 'unavailable' ? `unavailable:${d.cause}` : d.kind);

  it("keySlot (the slot a step is judged on) equals Redis' own CLUSTER KEYSLOT", async () => {
    const keys = [
      `${prefix}:rl:{key:7b576b0b-50e4-4023-ac1a-6f54e1af93c4}:key:sw`,
      `${prefix}:rl:{ip:2001:db8::/64}:ip:tb`,
      `${prefix}:kp:{p1}:seq`,
      'no-tag-at-all',
      'empty{}tag',
      '{}{b}',
      'x{a}{b}',
      'ünïcødé{ü}',
    ];
    for (const key of keys) expect(keySlot(key), key).toBe(Number(await reader.cluster('KEYSLOT', key)));
  });

  it('a multi-subject decision is one step per subject, each on its own master; a busy loop right after sending is not an outage', async () => {
    const [a, b, c] = [...subjectOn.values()];
    // every master has the script loaded (a master's first EVALSHA answers NOSCRIPT and the EVAL
    // that follows is a second round trip, sent only once the loop is free again)
    expect(kind(await limiter.decide([policy(a!), policy(b!), policy(c!)]))).toBe('admitted');
    const pending = limiter.decide([policy(a!), policy(b!), policy(c!)]);
    const until = performance.now() + 3 * SILENCE_MS;
    while (performance.now() < until) {
      // busy: the replies wait unread in our sockets
    }
    expect(kind(await pending)).toBe('admitted');
    expect(await Promise.all([a, b, c].map((s) => windowOf(s!)))).toEqual([2, 2, 2]);
  });

  it('a frozen master: decisions needing it are "silent" (bounded), the others are decided; committed steps are rolled back; exact after the thaw', async () => {
    const [frozenPort, otherPort] = [...subjectOn.keys()];
    const frozen = subjectOn.get(frozenPort!)!;
    const healthy = subjectOn.get(otherPort!)!;
    const direct = new Redis({ host: '127.0.0.1', port: frozenPort! });
    const info = await direct.info('server');
    direct.disconnect();
    frozenPid = Number(/process_id:(\d+)/.exec(info)![1]);
    const before = { frozen: await windowOf(frozen), healthy: await windowOf(healthy) };
    process.kill(frozenPid, 'SIGSTOP');
    try {
      expect(kind(await limiter.decide([policy(healthy)]))).toBe('admitted');
      expect(kind(await limiter.decide([policy(frozen)]))).toBe('unavailable:silent');
      // the healthy subject's step commits first, the frozen one fails: the first is rolled back
      const stats = limiter.stats();
      const split = await limiter.decide([policy(healthy), policy(frozen)]);
      expect(['unavailable:silent', 'unavailable:not_connected']).toContain(kind(split));
      expect(limiter.stats().rollbacks - stats.rollbacks).toBe(1);
      expect(limiter.stats().rollbackFailures).toBe(0);
      expect(await windowOf(healthy)).toBe(before.healthy + 1);
      // readiness: every master is pinged, the frozen one fails the probe
      await expect(connections.pingMasters()).rejects.toThrow();
    } finally {
      process.kill(frozenPid, 'SIGCONT');
      frozenPid = null;
    }
    // after the thaw: the frozen master ran the late steps past their deadline → STALE, nothing counted
    await pollUntil(async () => (await limiter.decide([policy(frozen)])).kind === 'admitted', {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: 'decisions on the thawed master',
    });
    expect(await windowOf(frozen)).toBe(before.frozen + 1);
    await expect(connections.pingMasters()).resolves.toBeUndefined();
  });
});
