import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OwnRedisCluster } from '../support/redis-cluster.js';

/**
 * The local Redis Cluster the cluster tests run on (test/support/redis-cluster.ts): three real
 * `redis-server --cluster-enabled yes` masters that together serve every slot, route keys by slot,
 * and refuse a script whose keys span slots unless a hash tag puts them in one.
 */
describe('local Redis Cluster (test support)', () => {
  let cluster: OwnRedisCluster;
  let client: Cluster;

  beforeAll(async () => {
    cluster = await OwnRedisCluster.start();
    client = cluster.client();
  });

  afterAll(async () => {
    client?.disconnect();
    await cluster?.stop();
  });

  it('three masters cover all 16384 slots and the cluster is ok', async () => {
    const info = String(await client.cluster('INFO'));
    expect(info).toContain('cluster_state:ok');
    expect(info).toContain('cluster_slots_assigned:16384');
    expect(info).toContain('cluster_known_nodes:3');
    const masters = client.nodes('master');
    expect(masters).toHaveLength(3);
  });

  it('keys land on different nodes by slot and read back through the cluster client', async () => {
    const keys = Array.from({ length: 30 }, (_, i) => `smoke:${i}`);
    for (const k of keys) await client.set(k, k);
    for (const k of keys) expect(await client.get(k)).toBe(k);
    const perNode = await Promise.all(client.nodes('master').map((n) => n.dbsize()));
    expect(perNode.filter((n) => n > 0).length).toBeGreaterThan(1);
    expect(perNode.reduce((a, b) => a + b, 0)).toBe(keys.length);
  });

  it('a script over two slots is refused (CROSSSLOT); a hash tag puts its keys in one slot', async () => {
    const lua = "redis.call('SET', KEYS[1], '1'); redis.call('SET', KEYS[2], '1'); return 1";
    expect(await client.cluster('KEYSLOT', 'rl:{key:a}:sw')).not.toBe(
      await client.cluster('KEYSLOT', 'rl:{user:b}:sw'),
    );
    await expect(client.eval(lua, 2, 'rl:{key:a}:sw', 'rl:{user:b}:sw')).rejects.toThrow(/CROSSSLOT/);
    await expect(client.eval(lua, 2, 'rl:{key:a}:sw', 'rl:{key:a}:tb')).resolves.toBe(1);
  });

  it('pub/sub reaches a subscriber connected to another node', async () => {
    const sub = cluster.client();
    try {
      const got = new Promise<string>((resolve) => sub.on('message', (_ch: string, m: string) => resolve(m)));
      await sub.subscribe('smoke:channel');
      await client.publish('smoke:channel', 'hello');
      await expect(got).resolves.toBe('hello');
    } finally {
      sub.disconnect();
    }
  });
});
