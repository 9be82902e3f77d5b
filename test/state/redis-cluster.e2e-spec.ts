import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  learnKeys,
  retreatStateKey,
  retreatWindowKey,
} from '../../src/adaptive/infrastructure/adaptive.scripts.js';
import { keyNames, sequenceKey } from '../../src/key-pool/infrastructure/key-selection.script.js';
import {
  budgetKeys,
  parseSubject,
  requestPolicy,
  subjectKeys,
  tokenBudgetPolicy,
} from '../../src/rate-limit/policies.js';
import type { Policy } from '../../src/rate-limit/policies.js';
import {
  ADMITTED,
  AdmissionScript,
  ChargeTokensScript,
  ResetScript,
} from '../../src/rate-limit/rate-limit.scripts.js';
import { RedisAtomicStore } from '../../src/state/atomic-store.js';
import { queueKeys } from '../../src/state/priority-queue.js';
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

  describe('every atomic script of a subject or a provider touches one slot (docs/scaling.md)', () => {
    const PREFIX = 'fgslots';
    const KEY_ID = '6f1c2b9e-0d4a-4c1e-9a59-1b2f3c4d5e6f';
    const USER_ID = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
    const slot = async (key: string) => Number(await client.cluster('KEYSLOT', `${PREFIX}:${key}`));
    const slots = async (keys: string[]) => new Set(await Promise.all(keys.map(slot)));
    const store = () => new RedisAtomicStore(client as unknown as Redis, PREFIX);

    const subjectPolicies = (subject: string): Policy[] => [
      requestPolicy('key', 'sliding_window', 3, 60_000, 3, subject),
      tokenBudgetPolicy(1000, subject),
      requestPolicy('chat', 'token_bucket', 10, 60_000, 5, subject, true),
    ];
    const admissionArgs = (policies: Policy[], member: string): (string | number)[] => [
      member,
      0,
      0,
      policies.length,
      ...policies.flatMap((p) => [p.kind, p.limit, p.windowMs, p.burst, p.cost]),
    ];

    it('the client limits of one subject run as one script on the cluster (admit, charge, reset)', async () => {
      const subject = `key:${KEY_ID}`;
      const policies = subjectPolicies(subject);
      const keys = policies.flatMap((p) => p.keys);
      expect((await slots(keys)).size).toBe(1);
      const replies = [];
      for (let i = 0; i < 4; i++)
        replies.push(await store().run(AdmissionScript, keys, admissionArgs(policies, `m${i}`)));
      expect(replies.map((r) => r[0])).toEqual([ADMITTED, ADMITTED, ADMITTED, 0]);
      const [used] = await store().run(ChargeTokensScript, budgetKeys(subject), ['c1', 42, 60_000]);
      expect(used).toBe(42);
      const all = subjectKeys(parseSubject(subject)!, [
        { name: 'chat', algorithm: 'token_bucket', limit: 10, windowSeconds: 60, burst: 5, per: 'principal' },
      ]);
      expect((await slots(all)).size).toBe(1);
      expect(await store().run(ResetScript, all, [])).toBeGreaterThanOrEqual(3);
    });

    it('key, user and IP subjects are distinct slots: one script over two subjects is CROSSSLOT', async () => {
      const k = subjectPolicies(`key:${KEY_ID}`);
      const u = [requestPolicy('user', 'sliding_window', 5, 60_000, 5, `user:${USER_ID}`)];
      const ip = [requestPolicy('ip', 'token_bucket', 5, 60_000, 5, 'ip:203.0.113.9')];
      const tags = await Promise.all(
        [k, u, ip].map(async (ps) => [...(await slots(ps.flatMap((p) => p.keys)))]),
      );
      expect(tags.every((t) => t.length === 1)).toBe(true);
      expect(new Set(tags.flat()).size).toBe(3);
      const both = [...k, ...u];
      await expect(
        store().run(
          AdmissionScript,
          both.flatMap((p) => p.keys),
          admissionArgs(both, 'x'),
        ),
      ).rejects.toThrow(/CROSSSLOT/);
    });

    it("a provider's key-pool, adaptive and queue keys share its slot", async () => {
      const p = '3c9d7e1a-5b2f-4e8d-a1c6-7f0e9b8d2a4c';
      const keys = [
        ...keyNames(p, 'k1'),
        ...keyNames(p, 'k2'),
        sequenceKey(p),
        ...queueKeys(p),
        ...learnKeys(p, 'k1'),
        retreatStateKey(p),
        retreatWindowKey(p),
      ];
      expect((await slots(keys)).size).toBe(1);
      const other = await slots(keyNames('a-different-provider', 'k1'));
      expect(other.size).toBe(1);
    });
  });
});
