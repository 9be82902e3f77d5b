import { Redis } from 'ioredis';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RelayDispatcher } from '../../src/relay/dispatcher.js';
import { RedisConnections } from '../../src/redis/redis.module.js';
import { RedisAtomicStore, type AtomicScript } from '../../src/state/atomic-store.js';
import { newApiKey } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import { startGateways } from '../support/gateway.js';
import { adminCall } from '../support/relay.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A TCP proxy in front of Redis that passes commands at once but can hold Redis' replies: what a
 * reply still on its way looks like to the client that sent the command.
 */
class ReplyHoldingProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private readonly held: { to: net.Socket; data: Buffer }[] = [];
  private holding = false;
  port = 0;

  constructor(private readonly target: URL) {}

  async start(): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(Number(this.target.port || 6379), this.target.hostname);
      this.sockets.add(client).add(upstream);
      client.pipe(upstream);
      upstream.on('data', (data: Buffer) => {
        if (this.holding) this.held.push({ to: client, data });
        else client.write(data);
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server!.address() as net.AddressInfo).port;
  }

  hold(): void {
    this.holding = true;
  }

  release(): void {
    this.holding = false;
    for (const { to, data } of this.held.splice(0)) to.write(data);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** KEYS[1] = ARGV[1]; returns 1 (and the in-process half does the same). */
const setScript: AtomicScript<number> = {
  name: 'test-set',
  lua: "redis.call('SET', KEYS[1], ARGV[1]) return 1",
  local(db, keys, args) {
    db.hset(keys[0]!, { v: args[0]! });
    return 1;
  },
};

/**
 * The hand-off of a freed slot is the release script and, right behind it, the dispatch script on
 * the store's connection. That connection must not hold a command back until earlier replies are
 * in: with ioredis' auto-pipelining a command issued while an earlier batch's replies are
 * outstanding waits for all of them before it is even written — under load that stop-and-wait put
 * several ms between a release and the dispatch that hands its slot on (bench contended section).
 * (Commands of one event-loop turn still share a write: RedisConnections' coalesceWrites.)
 */
describe('the store connection writes a command without waiting for earlier replies', () => {
  const prefix = uniqueName('fghandoff');
  let proxy: ReplyHoldingProxy;
  let connections: RedisConnections;
  let direct: Redis;

  beforeAll(async () => {
    proxy = new ReplyHoldingProxy(new URL(TEST_REDIS_URL));
    await proxy.start();
    const via = new URL(TEST_REDIS_URL);
    via.hostname = '127.0.0.1';
    via.port = String(proxy.port);
    connections = new RedisConnections({ url: via.toString() }, prefix);
    direct = new Redis(TEST_REDIS_URL);
    const command = connections.command;
    if (command.status !== 'ready') await new Promise((resolve) => command.once('ready', resolve));
  });
  afterAll(async () => {
    proxy?.release();
    await connections?.onApplicationShutdown();
    await proxy?.close();
    await dropRedisPrefix(prefix);
    direct?.disconnect();
  });

  it('a script issued while an earlier reply is still on its way reaches Redis without waiting for it', async () => {
    const store = new RedisAtomicStore(connections.command, prefix);
    // loads the script (EVALSHA then finds it)
    await store.run(setScript, ['warm'], ['1']);
    proxy.hold();
    const first = store.run(setScript, ['first'], ['1']);
    // the first command is written and Redis has run it; its reply is held by the proxy
    for (let i = 0; i < 500 && (await direct.get(`${prefix}:first`)) !== '1'; i++) await sleep(5);
    expect(await direct.get(`${prefix}:first`)).toBe('1');
    const second = store.run(setScript, ['second'], ['1']);
    for (let i = 0; i < 200 && (await direct.get(`${prefix}:second`)) !== '1'; i++) await sleep(5);
    // Redis ran the second one while the first reply was still held
    expect(await direct.get(`${prefix}:second`)).toBe('1');
    proxy.release();
    expect(await Promise.all([first, second])).toEqual([1, 1]);
  });
});

/**
 * Two instances of one cluster share one upstream key's slots (max_concurrent 3) under a closed loop
 * of clients split between them, so slots freed on one instance are handed to requests waiting on
 * the other: every request is answered 200, reaches the upstream exactly once (none lost, none
 * dispatched twice), and the upstream never sees more than 3 at once.
 */
describe('two instances sharing one key’s slots under a closed loop', () => {
  const SLOTS = 3;
  const CLIENTS = 16;
  const PER_CLIENT = 8;
  let fake: FakeProvider;
  let cluster: Awaited<ReturnType<typeof startGateways>>;
  let adminKey: string;

  beforeAll(async () => {
    fake = await FakeProvider.start();
    fake.when({ reply: { delayMs: 15 } });
    adminKey = newApiKey();
    cluster = await startGateways(2, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_IP_RPM: '1000000',
      QUEUE_TIMEOUT_NORMAL_MS: '60000',
    });
    const [a] = cluster.gateways;
    const provider = await adminCall(a!, adminKey, 'POST', '/api/admin/providers', {
      name: 'fake',
      base_url: fake.baseUrl,
      models: fake.models,
      timeout_ms: 30_000,
    });
    expect(provider.status).toBe(201);
    const key = await adminCall(a!, adminKey, 'POST', `/api/admin/providers/${provider.body.id}/keys`, {
      label: 'shared',
      key: 'sk-shared',
      max_concurrent: SLOTS,
    });
    expect(key.status).toBe(201);
  });
  afterAll(async () => {
    await cluster?.close();
    await fake?.close();
  });

  it('every request answered once and sent upstream once; never more than the key’s slots in flight', async () => {
    const gateways = cluster.gateways;
    // warm both instances' caches, then count from zero
    for (const g of gateways) {
      const r = await fetch(`${g.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'warm' }] }),
      });
      expect(r.status).toBe(200);
    }
    fake.reset();
    const statuses: number[] = [];
    const sent: string[] = [];
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        const gw = gateways[c % gateways.length]!;
        for (let i = 0; i < PER_CLIENT; i++) {
          const tag = `c${c}-r${i}`;
          sent.push(tag);
          const r = await fetch(`${gw.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: tag }] }),
          });
          await r.text();
          statuses.push(r.status);
        }
      }),
    );
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    const upstream = fake.requests.map((r) => r.body.messages[0].content as string);
    expect(upstream.length).toBe(CLIENTS * PER_CLIENT);
    expect(new Set(upstream).size).toBe(upstream.length);
    expect([...upstream].sort()).toEqual([...sent].sort());
    expect(fake.maxInFlight).toBeLessThanOrEqual(SLOTS);
    // the slots were contended, and handed over by the dispatchers of both instances
    const granted = gateways.map((g) => g.app.get(RelayDispatcher).granted);
    expect(granted.every((n) => n > 0)).toBe(true);
  });
});
