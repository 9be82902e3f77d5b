import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import { RelayDispatcher } from '../../src/relay/dispatcher.js';
import { bearer } from '../support/auth.js';
import { startRelay, type RelayFixture } from '../support/relay.js';
import { TEST_REDIS_URL } from '../support/services.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What a popped job looks like in a reply (PriorityQueue's job record, `"d":{"instance":…}`): only
 * the dispatch script's commit (and `take`) reply with one.
 */
const POPPED_JOB = Buffer.from('"d":{"instance":"');

/**
 * A TCP proxy in front of Redis that passes everything through until armed; then the FIRST reply
 * chunk that carries a popped job (the dispatch script's commit: Redis has run it, the job is out of
 * the queue and the lease taken) is, by mode:
 * - `delay`: held, with everything after it on that connection, for `ms` (past ioredis'
 *   commandTimeout, so the command has already been rejected when it arrives);
 * - `cut`: dropped, and the connection closed (ioredis reconnects).
 */
class ReplyLosingProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private armed: { mode: 'delay' | 'cut'; ms: number } | null = null;
  port = 0;
  /** How many replies it lost (held or dropped). */
  fired = 0;

  constructor(private readonly target: URL) {}

  async start(): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(Number(this.target.port || 6379), this.target.hostname);
      this.sockets.add(client).add(upstream);
      client.pipe(upstream);
      let heldUntil = 0;
      const held: Buffer[] = [];
      upstream.on('data', (data: Buffer) => {
        if (this.armed && data.includes(POPPED_JOB)) {
          const { mode, ms } = this.armed;
          this.armed = null;
          this.fired++;
          if (mode === 'cut') {
            client.destroy();
            upstream.destroy();
            return;
          }
          heldUntil = Date.now() + ms;
          held.push(data);
          setTimeout(() => {
            heldUntil = 0;
            if (!client.destroyed) for (const d of held.splice(0)) client.write(d);
          }, ms);
          return;
        }
        if (heldUntil > 0) held.push(data);
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

  arm(mode: 'delay' | 'cut', ms = 0): void {
    this.armed = { mode, ms };
  }

  get url(): string {
    const via = new URL(TEST_REDIS_URL);
    via.hostname = '127.0.0.1';
    via.port = String(this.port);
    return via.toString();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * The dispatch script pops the queue's head and takes a slot in one atomic step; for a job of the
 * same instance the grant travels only in the script's reply. That reply can be lost after Redis ran
 * the script: it arrives after the store connection's commandTimeout (1 s: a loaded event loop, a
 * slow network), or the connection drops before it arrives. Neither may lose the grant (the waiting
 * request must be served, not left to its queue timeout) nor hold the slot until the lease TTL
 * (30 s here): the in-flight count must come back to 0 once the requests are done. When the
 * request has given up by the time the grant is recovered (its 2.5 s queue timeout, its failed
 * removal, then the 2 s late-grant window, all within the 6 s the reply is held), the grant's lease
 * is given back at once.
 */
describe.each([
  {
    mode: 'delay' as const,
    ms: 1500,
    queueTimeoutMs: 10_000,
    served: true,
    what: 'arrives after the command timeout',
  },
  { mode: 'cut' as const, ms: 0, queueTimeoutMs: 10_000, served: true, what: 'is cut with its connection' },
  {
    mode: 'delay' as const,
    ms: 6000,
    queueTimeoutMs: 2500,
    served: false,
    what: 'comes back after its request gave up',
  },
])('the dispatch script’s reply $what (distributed, one slot)', ({ mode, ms, queueTimeoutMs, served }) => {
  let proxy: ReplyLosingProxy;
  let fx: RelayFixture;

  beforeAll(async () => {
    proxy = new ReplyLosingProxy(new URL(TEST_REDIS_URL));
    await proxy.start();
    fx = await startRelay('distributed', {
      env: {
        REDIS_URL: proxy.url,
        QUEUE_TIMEOUT_NORMAL_MS: String(queueTimeoutMs),
        RATE_LIMIT_KEY_RPM: '1000000',
        RATE_LIMIT_USER_RPM: '1000000',
        RATE_LIMIT_IP_RPM: '1000000',
      },
      provider: { timeout_ms: 10_000 },
      keys: [{ key: 'sk-one', max_concurrent: 1 }],
    });
  }, 30_000);
  afterAll(async () => {
    await fx?.close();
    await proxy?.close();
  });

  const ask = async (tag: string) => {
    const started = Date.now();
    const res = await fetch(`${fx.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(fx.adminKey),
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: tag }] }),
      signal: AbortSignal.timeout(30_000),
    });
    const body = (await res.json().catch(() => null)) as { error?: { code?: string } } | null;
    return { status: res.status, code: body?.error?.code, ms: Date.now() - started };
  };

  it(
    served
      ? 'the waiting request is still served, and the slot is free again afterwards'
      : 'the request times out as before, and the recovered grant’s slot is given back at once',
    async () => {
      expect((await ask('warm')).status).toBe(200);
      fx.fake.reset();
      fx.fake.when({
        reply: (req) => (req.body.messages[0].content === 'blocker' ? { delayMs: 1500 } : { delayMs: 10 }),
      });
      const dispatcher = fx.gw.app.get(RelayDispatcher);
      const blocker = ask('blocker');
      while (fx.fake.inFlight < 1) await sleep(5);
      const queued = ask('queued');
      for (let i = 0; i < 1000; i++) {
        const depth = await dispatcher.depth(fx.providerId);
        if (Object.values(depth).reduce((a, b) => a + b, 0) >= 1) break;
        await sleep(5);
      }
      // the slot the blocker frees goes to the queued request: the reply of that dispatch is lost
      proxy.arm(mode, ms);
      const [b, q] = await Promise.all([blocker, queued]);
      const pool = fx.gw.app.get(KeyPoolService);
      const keyId = fx.keyIds['sk-one']!;
      const doneAt = Date.now();
      let inFlight = -1;
      // (read on the gateway's own store connection: -1 while the proxy still holds its replies)
      while (Date.now() - doneAt < 8000) {
        inFlight = await pool
          .windows(fx.providerId, [keyId])
          .then((w) => w[0]!.inFlight)
          .catch(() => -1);
        if (inFlight === 0) break;
        await sleep(100);
      }
      console.log(
        `[lost-dispatch-reply ${mode}] proxy lost ${proxy.fired} reply; blocker ${b.status}; queued ${q.status}${q.code ? ` ${q.code}` : ''} after ${q.ms} ms (queue timeout ${queueTimeoutMs} ms); ` +
          `in-flight ${inFlight} ${Date.now() - doneAt} ms after both answered; grants recovered from their box ${dispatcher.recovered}; upstream saw ${JSON.stringify(fx.fake.requests.map((r) => r.body.messages[0].content))}`,
      );
      expect(proxy.fired).toBe(1);
      expect(b.status).toBe(200);
      if (served) {
        expect(q.status).toBe(200);
        expect(fx.fake.requests.map((r) => r.body.messages[0].content)).toEqual(['blocker', 'queued']);
      } else {
        expect([q.status, q.code]).toEqual([429, 'queue_timeout']);
        expect(fx.fake.requests.map((r) => r.body.messages[0].content)).toEqual(['blocker']);
        expect(dispatcher.recovered).toBeGreaterThan(0); // the grant came back from its grant box
      }
      expect(inFlight).toBe(0);
      // and the slot serves the next request at once
      expect((await ask('after')).status).toBe(200);
    },
    40_000,
  );
});
