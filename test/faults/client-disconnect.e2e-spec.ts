import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import { RelayDispatcher } from '../../src/relay/dispatcher.js';
import { newApiKey } from '../support/auth.js';
import {
  addProvider,
  chat,
  dropClientConnections,
  openStream,
  pollUntil,
  type RelayAnswer,
} from '../support/cluster.js';
import { FakeProvider, type RecordedRequest } from '../support/fake-provider.js';
import { startGateway, type TestGateway } from '../support/gateway.js';

/**
 * The client goes away: before the first byte (non-streaming and streaming), mid-stream, and while
 * its request waits in the queue. Pass criteria: the upstream request is closed ≤ 1 s after the
 * client left (fake provider: closedEarly, endedAt), the key's in-flight count is back to 0 ≤ 1 s,
 * and a queued request that was abandoned never reaches the upstream and leaves the queue.
 */
describe('client disconnects (distributed)', () => {
  let gw: TestGateway;
  let fake: FakeProvider;
  let providerId: string;
  let keyId: string;
  const adminKey = newApiKey();
  const model = 'disconnect-model';

  beforeAll(async () => {
    fake = await FakeProvider.start();
    gw = await startGateway('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_TIMEOUT_MS: '2000',
    });
    const p = await addProvider(gw, adminKey, fake, [{ key: 'sk-disconnect', max_concurrent: 1 }], {
      models: [model],
    });
    providerId = p.providerId;
    keyId = p.keyIds[0]!;
  });
  afterAll(async () => {
    dropClientConnections(gw);
    await gw?.close();
    await fake?.close();
  });

  const inFlight = async () => (await gw.app.get(KeyPoolService).windows(providerId, [keyId]))[0]!.inFlight;

  /** The upstream request ended early ≤ 1 s after `leftAt`, and the slot is free ≤ 1 s after. */
  async function upstreamClosedAndReleased(req: () => RecordedRequest | undefined, leftAt: number) {
    const { value: seen } = await pollUntil(() => (req()?.endedAt !== undefined ? req() : false), {
      timeoutMs: 2000,
      intervalMs: 10,
      what: 'the upstream request to end',
    });
    expect(seen.closedEarly).toBe(true);
    const closeMs = seen.endedAt! - leftAt;
    const { ms: releaseMs } = await pollUntil(async () => (await inFlight()) === 0, {
      timeoutMs: 1000,
      intervalMs: 10,
      what: 'the key to have nothing in flight',
    });
    expect(closeMs).toBeLessThanOrEqual(1000);
    return { closeMs, releaseMs };
  }

  const arrived = (tag: string) =>
    pollUntil(() => fake.requests.find((r) => r.body?.messages?.[0]?.content === tag) ?? false, {
      timeoutMs: 5000,
      intervalMs: 5,
      what: `${tag} to reach the upstream`,
    });

  it('before the first byte (non-streaming): the upstream request is closed ≤ 1 s after the client left; slot released', async () => {
    fake.reset();
    fake.when({ model, reply: { delayMs: 5000 } });
    const controller = new AbortController();
    const pending = chat(gw.url, adminKey, 'nb-abort', { model, signal: controller.signal }).catch(
      (e: unknown) => e,
    );
    await arrived('nb-abort');
    const leftAt = Date.now();
    controller.abort();
    await pending;
    const t = await upstreamClosedAndReleased(() => fake.requests[0], leftAt);
    console.log(
      `[faults] client left before first byte (json): upstream closed +${t.closeMs} ms, slot free +${t.releaseMs.toFixed(0)} ms`,
    );
  });

  it('before the first byte (streaming): the same', async () => {
    fake.reset();
    fake.when({ model, reply: { delayMs: 5000 } });
    const controller = new AbortController();
    const pending = openStream(gw.url, adminKey, 'sb-abort', { model, signal: controller.signal }).catch(
      (e: unknown) => e,
    );
    await arrived('sb-abort');
    const leftAt = Date.now();
    controller.abort();
    await pending;
    const t = await upstreamClosedAndReleased(() => fake.requests[0], leftAt);
    console.log(
      `[faults] client left before first byte (stream): upstream closed +${t.closeMs} ms, slot free +${t.releaseMs.toFixed(0)} ms`,
    );
  });

  it('mid-stream: the upstream request is closed ≤ 1 s after the client left; slot released', async () => {
    fake.reset();
    fake.when({
      model,
      reply: { chunkDelayMs: 200, text: Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ') },
    });
    const controller = new AbortController();
    const res = await openStream(gw.url, adminKey, 'mid-abort', { model, signal: controller.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    expect(await inFlight()).toBe(1);
    const leftAt = Date.now();
    controller.abort();
    const t = await upstreamClosedAndReleased(() => fake.requests[0], leftAt);
    console.log(
      `[faults] client left mid-stream: upstream closed +${t.closeMs} ms, slot free +${t.releaseMs.toFixed(0)} ms`,
    );
  });

  it('while queued: the abandoned request leaves the queue and never reaches the upstream; the holder completes and the slot is free', async () => {
    fake.reset();
    fake.when({ model, reply: { delayMs: 1500 } });
    const dispatcher = gw.app.get(RelayDispatcher);
    const waiting = async () => Object.values(await dispatcher.depth(providerId)).reduce((a, b) => a + b, 0);
    const holder = chat(gw.url, adminKey, 'holder', { model });
    await arrived('holder');
    const controller = new AbortController();
    const queued: Promise<RelayAnswer | unknown> = chat(gw.url, adminKey, 'queued-abort', {
      model,
      signal: controller.signal,
    }).catch((e: unknown) => e);
    await pollUntil(async () => (await waiting()) === 1, {
      timeoutMs: 3000,
      intervalMs: 10,
      what: 'the request to queue',
    });
    controller.abort();
    await queued;
    const { ms } = await pollUntil(async () => (await waiting()) === 0, {
      timeoutMs: 1000,
      intervalMs: 10,
      what: 'the abandoned request to leave the queue',
    });
    expect((await holder).status).toBe(200);
    await pollUntil(async () => (await inFlight()) === 0, {
      timeoutMs: 1000,
      intervalMs: 10,
      what: 'the slot to be free',
    });
    expect(fake.requests.map((r) => r.body.messages[0].content)).toEqual(['holder']);
    console.log(`[faults] abandoned queued request left the queue after ${ms.toFixed(0)} ms`);
  });
});
