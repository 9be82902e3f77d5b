import { Redis, type Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { RateLimitService } from '../../src/rate-limit/rate-limit.service.js';
import { bearer, createUserWithKey, newApiKey, sha256Hex } from '../support/auth.js';
import { addProvider, chat, dropClientConnections, startInstance } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, type TestGateway } from '../support/gateway.js';
import { OwnRedisCluster } from '../support/redis-cluster.js';
import { createTestDatabase, uniqueName } from '../support/services.js';

/**
 * Distributed mode on a real Redis Cluster (REDIS_CLUSTER_NODES, three masters from
 * test/support/redis-cluster.ts): two gateway instances sharing one Postgres and the cluster.
 * The client limits run as ordered per-subject steps (key, user, IP), each atomic on its slot,
 * with a rollback when a later subject refuses (docs/scaling.md, "Redis Cluster"); the relay's
 * provider step runs on the provider's slot.
 */

const BURST = 300;

interface Counted {
  ok: number;
  /** admitted per key (index into `keys`) */
  okByKey: number[];
  limited: number;
  other: { status: number; body: string }[];
}

async function burst(gateways: TestGateway[], keys: string[], n: number): Promise<Counted> {
  const answers = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const gw = gateways[i % gateways.length]!;
      const res = await fetch(`${gw.url}/api/me`, { headers: bearer(keys[i % keys.length]!, false) });
      const body = await res.text();
      return { status: res.status, body, limit: res.headers.get('x-ratelimit-limit'), key: i % keys.length };
    }),
  );
  const counted: Counted = { ok: 0, okByKey: keys.map(() => 0), limited: 0, other: [] };
  for (const a of answers) {
    if (a.status === 200 && a.limit !== null) {
      counted.ok++;
      counted.okByKey[a.key]!++;
    } else if (a.status === 429) counted.limited++;
    else counted.other.push({ status: a.status, body: a.body.slice(0, 300) });
  }
  return counted;
}

async function metric(gw: TestGateway, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(labels)) total += Number(line.split(' ').pop());
  }
  return total;
}

describe('distributed mode on a Redis Cluster (REDIS_CLUSTER_NODES)', () => {
  let cluster: OwnRedisCluster;
  let redis: Cluster;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let gateways: TestGateway[] = [];
  let fake: FakeProvider;
  const adminKey = newApiKey();
  const prefix = uniqueName('fgcl');
  const USER_RPM = 20;
  const KEY_RPM = 15;

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
      RATE_LIMIT_KEY_RPM: String(KEY_RPM),
      RATE_LIMIT_USER_RPM: String(USER_RPM),
      RATE_LIMIT_IP_RPM: '1000000',
      // a loaded test machine must not turn slow replies into failure-mode answers
      RATE_LIMIT_TIMEOUT_MS: '2000',
      // Adaptive's periodic flush (not per request) stays out of the counted round trips
      ADAPTIVE_FLUSH_MS: '600000',
    };
    gateways = [await startInstance(env), await startInstance(env)];
  }, 120_000);

  afterAll(async () => {
    dropClientConnections(...gateways);
    await Promise.all(gateways.map((g) => g.close()));
    await fake?.close();
    redis?.disconnect();
    await cluster?.stop();
    await db?.drop();
  }, 60_000);

  it('both instances run in distributed mode on the cluster and are ready (every master answers)', async () => {
    for (const gw of gateways) {
      expect(gw.config.mode).toBe('distributed');
      expect(gw.config.redis.url).toBeUndefined();
      const ready = await getJson(`${gw.url}/health/ready`);
      expect(ready.status).toBe(200);
      expect(JSON.stringify(ready.body)).toContain('"redis"');
    }
  });

  it(`a burst at a key's limit across both instances admits exactly the limit (${KEY_RPM})`, async () => {
    const { key, keyId } = await createUserWithKey(gateways[0]!, adminKey, 'user', {
      key: { limits: { rpm: KEY_RPM } },
    });
    const counted = await burst(gateways, [key], BURST);
    expect(counted.other).toEqual([]);
    expect(counted.ok).toBe(KEY_RPM);
    expect(counted.limited).toBe(BURST - KEY_RPM);
    // the count lives in the cluster, under the key's hash tag
    expect(await redis.zcard(`${prefix}:rl:{key:${keyId}}:key:sw`)).toBe(KEY_RPM);
  });

  it(`a burst at a user's limit across four of their keys admits exactly ${USER_RPM}, and no key window keeps a refused request`, async () => {
    // the first key's limit is above 1,000/min: its window is a sub-bucket hash (rate-limit.md), the
    // others' exact logs — the rollbacks give back both
    const first = await createUserWithKey(gateways[0]!, adminKey, 'user', { key: { limits: { rpm: 5000 } } });
    const keys = [first.key];
    const keyIds = [first.keyId];
    for (let i = 0; i < 3; i++) {
      const k = await getJson(`${gateways[0]!.url}/api/admin/users/${first.user.id}/keys`, {
        method: 'POST',
        headers: bearer(adminKey),
        body: JSON.stringify({ name: `more-${i}`, limits: { rpm: 1000 } }),
      });
      expect(k.status).toBe(201);
      keys.push(k.body.key);
      keyIds.push(k.body.id);
    }
    const rolledBack = await Promise.all(
      gateways.map((g) => metric(g, 'floodgate_rate_limit_rollbacks_total', 'result="done"')),
    );
    const counted = await burst(gateways, keys, BURST);
    expect(counted.other).toEqual([]);
    expect(counted.ok).toBe(USER_RPM);
    expect(counted.limited).toBe(BURST - USER_RPM);
    expect(await redis.zcard(`${prefix}:rl:{user:${first.user.id}}:user:sw`)).toBe(USER_RPM);
    // each refusal by the user step rolled back the key step before it: the key windows hold
    // exactly the admitted requests (no phantom places), the IP window too (it ran only for them)
    const perKey = await Promise.all(keyIds.map((id) => redis.zcard(`${prefix}:rl:{key:${id}}:key:sw`)));
    expect(perKey[0]).toBe(0); // no log for the sub-bucket key
    const sb = await redis.hgetall(`${prefix}:rl:{key:${keyIds[0]}}:key:sb`);
    const inBuckets = Object.entries(sb)
      .filter(([f]) => !['s', 'lo', 'b'].includes(f))
      .reduce((a, [, v]) => a + Number(v), 0);
    expect(Number(sb.s ?? 0)).toBe(inBuckets);
    // each key's window holds exactly the requests it got admitted (which keys won the race is the
    // machine's: under load all 20 can go to the other three, so the sub-bucket key may hold 0 —
    // its ≥ 55 refusals were rolled back either way)
    expect(inBuckets).toBe(counted.okByKey[0]);
    expect(perKey.slice(1)).toEqual(counted.okByKey.slice(1));
    expect(perKey.reduce((a, b) => a + b, 0) + inBuckets).toBe(USER_RPM);
    const after = await Promise.all(
      gateways.map((g) => metric(g, 'floodgate_rate_limit_rollbacks_total', 'result="done"')),
    );
    expect(after.reduce((a, b) => a + b, 0) - rolledBack.reduce((a, b) => a + b, 0)).toBe(BURST - USER_RPM);
    const failed = await Promise.all(
      gateways.map((g) => metric(g, 'floodgate_rate_limit_rollbacks_total', 'result="failed"')),
    );
    expect(failed).toEqual([0, 0]);
  });

  it('relays a chat completion end to end, and queues while the upstream key is saturated', async () => {
    fake.when({ path: '/v1/chat/completions', reply: { delayMs: 300, text: 'from the cluster' } });
    const { providerId } = await addProvider(gateways[0]!, adminKey, fake, [
      { key: 'sk-cluster-1', max_concurrent: 1 },
    ]);
    expect(providerId).toBeTruthy();
    const { key } = await createUserWithKey(gateways[0]!, adminKey, 'user', {
      key: { limits: { rpm: 100 } },
    });
    const one = await chat(gateways[1]!.url, key, 'single');
    expect(one.status, one.text).toBe(200);
    expect(one.body.choices[0].message.content).toBe('from the cluster');
    expect(one.headers.get('x-ratelimit-limit')).toBeTruthy();

    // four at once on one key allowed one request at a time, over both instances: all served,
    // never more than one upstream at a time (the others waited in the provider's queue)
    fake.maxInFlight = 0;
    const answers = await Promise.all(
      Array.from({ length: 4 }, (_, i) => chat(gateways[i % 2]!.url, key, `queued-${i}`)),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    expect(fake.maxInFlight).toBe(1);
  }, 60_000);

  it('round trips of one uncontended relayed request: one script per subject (key, user, IP), then the provider step', async () => {
    const fresh = await FakeProvider.start();
    try {
      await addProvider(gateways[0]!, adminKey, fresh, [{ key: 'sk-rt-cluster' }], {
        models: ['rt-model'],
      });
      const { key } = await createUserWithKey(gateways[0]!, adminKey, 'user', {
        key: { limits: { rpm: 100 } },
      });
      const send = () => chat(gateways[0]!.url, key, 'rt', { model: 'rt-model' });
      for (let i = 0; i < 3; i++) expect((await send()).status).toBe(200); // warm: scripts loaded, caches filled
      await new Promise((r) => setTimeout(r, 300));
      // every master's MONITOR: the scripts naming this deployment's prefix, in arrival order
      const scripts: { at: number; keys: string[] }[] = [];
      const bases = cluster.ports.map((port) => new Redis({ host: '127.0.0.1', port }));
      const monitors = await Promise.all(bases.map((b) => b.monitor()));
      try {
        for (const m of monitors)
          m.on('monitor', (time: string, args: unknown[]) => {
            const words = args.map(String);
            const cmd = words[0]!.toLowerCase();
            if ((cmd === 'evalsha' || cmd === 'eval') && words.some((w) => w.startsWith(`${prefix}:`)))
              scripts.push({ at: Number(time), keys: words.slice(3, 3 + Number(words[2])) });
          });
        await new Promise((r) => setTimeout(r, 100));
        const res = await send();
        expect(res.status).toBe(200);
        await new Promise((r) => setTimeout(r, 500)); // the release/report after the answer
      } finally {
        for (const m of [...monitors, ...bases]) m.disconnect();
      }
      scripts.sort((a, b) => a.at - b.at);
      const tags = scripts.map((s) => [...new Set(s.keys.map((k) => /\{([^}]*)\}/.exec(k)?.[1]))]);
      // every script touches one hash tag (one slot)
      for (const t of tags) expect(t).toHaveLength(1);
      const subjects = tags.map((t) => t[0]!.split(':')[0]);
      console.log(
        `[cluster round trips] ${scripts.length} scripts: ${scripts.map((s) => s.keys[0]).join(' → ')}`,
      );
      const clientSteps = subjects.filter((s) => s === 'key' || s === 'user' || s === 'ip');
      expect(clientSteps).toEqual(['key', 'user', 'ip']);
      // the client steps come first, then the provider's own slot (selection + lease, then the release)
      expect(subjects.slice(0, 3)).toEqual(['key', 'user', 'ip']);
      expect(subjects.slice(3).every((s) => s !== 'key' && s !== 'user' && s !== 'ip')).toBe(true);
      // single Redis: 2 (round-trips.e2e-spec.ts); cluster: 3 client steps + the selection + the answer path
      expect(subjects).toHaveLength(5);
    } finally {
      await fresh.close();
    }
  });

  it('a team limit shared by two members: a burst across both instances admits exactly the team rpm; key and user windows keep no refused request', async () => {
    const TEAM_RPM = 6;
    // The earlier cases spent the admin key's budget (key 15/min, user 20/min): forget it, through
    // the limiter's own reset, so this case's setup calls are not refused.
    const limiter = gateways[0]!.app.get(RateLimitService);
    const [admin] = (await gateways[0]!.app
      .get(DataSource)
      .query(`SELECT id, user_id FROM api_keys WHERE key_hash = $1`, [sha256Hex(adminKey)])) as {
      id: string;
      user_id: string;
    }[];
    await limiter.reset(`key:${admin!.id}`);
    await limiter.reset(`user:${admin!.user_id}`);
    const team = await getJson(`${gateways[0]!.url}/api/admin/teams`, {
      method: 'POST',
      headers: bearer(adminKey),
      body: JSON.stringify({ name: `cluster-${prefix}`, limits: { rpm: TEAM_RPM } }),
    });
    expect(team.status).toBe(201);
    const members = [
      await createUserWithKey(gateways[0]!, adminKey, 'user'),
      await createUserWithKey(gateways[0]!, adminKey, 'user'),
    ];
    for (const m of members) {
      const r = await getJson(`${gateways[0]!.url}/api/admin/teams/${team.body.id}/members/${m.user.id}`, {
        method: 'POST',
        headers: bearer(adminKey),
        body: '{}',
      });
      expect(r.status).toBe(201);
    }
    const counted = await burst(
      gateways,
      members.map((m) => m.key),
      60,
    );
    expect(counted.other).toEqual([]);
    expect(counted.ok).toBe(TEAM_RPM);
    expect(counted.limited).toBe(60 - TEAM_RPM);
    // the team's count lives under its own hash tag; the steps before it (key, user) were rolled back
    expect(await redis.zcard(`${prefix}:rl:{team:${team.body.id}}:team:sw`)).toBe(TEAM_RPM);
    const keyWindows = await Promise.all(
      members.map((m) => redis.zcard(`${prefix}:rl:{key:${m.keyId}}:key:sw`)),
    );
    const userWindows = await Promise.all(
      members.map((m) => redis.zcard(`${prefix}:rl:{user:${m.user.id}}:user:sw`)),
    );
    expect(keyWindows.reduce((a, b) => a + b, 0)).toBe(TEAM_RPM);
    expect(userWindows.reduce((a, b) => a + b, 0)).toBe(TEAM_RPM);
  });
});
