import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  UpstreamClient,
  classify,
  type UpstreamRequest,
} from '../../src/relay/infrastructure/upstream-client.js';
import { ClientGone } from '../../src/relay/stages/client-gone.js';
import { FakeProvider } from '../support/fake-provider.js';
import { startGateway, type TestGateway } from '../support/gateway.js';

/**
 * Per-target upstream timeouts on the booted app's UpstreamClient (its SSRF-guarded pools) against
 * the fake provider, a real slow HTTP server. The provider-wide timeout is 30 s in every case: without
 * the override it exercises, each request would get its slow answer instead of a timeout (shown
 * failing on the previous client). Connect timeouts: upstream-client.spec.ts (a TLS handshake that
 * never completes).
 */
describe('upstream timeouts (per target)', () => {
  let gw: TestGateway;
  let fake: FakeProvider;
  let client: UpstreamClient;

  beforeAll(async () => {
    fake = await FakeProvider.start({ text: 'one two three four five six seven eight nine ten' });
    gw = await startGateway('embedded');
    client = gw.app.get(UpstreamClient);
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
  });

  const chat = (model: string, stream: boolean, timeouts: UpstreamRequest['timeouts']): UpstreamRequest => ({
    baseUrl: `${fake.url}/v1`,
    path: '/chat/completions',
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-timeouts' },
    body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] }),
    signal: new ClientGone(),
    timeoutMs: 30_000,
    timeouts,
  });
  const failure = (p: Promise<unknown>) =>
    p.then(
      () => null,
      (e: unknown) => classify(e).kind,
    );
  const recorded = (model: string) => fake.requests.find((r) => r.body?.model === model);

  it('firstByteMs: an upstream slower to its headers is a timeout, and the upstream request is ended', async () => {
    fake.when({ model: 'slow-headers', reply: { delayMs: 3000 } });
    const started = performance.now();
    expect(await failure(client.send(chat('slow-headers', false, { firstByteMs: 300 })))).toBe('timeout');
    expect(performance.now() - started).toBeLessThan(2500);
    await expect.poll(() => recorded('slow-headers')?.closedEarly).toBe(true);
  });

  it('totalMs before the headers: a timeout (the retry table sees an ordinary upstream timeout)', async () => {
    fake.when({ model: 'slow-total', reply: { delayMs: 3000 } });
    expect(await failure(client.send(chat('slow-total', false, { totalMs: 300 })))).toBe('timeout');
    await expect.poll(() => recorded('slow-total')?.closedEarly).toBe(true);
  });

  it('stream totalMs: a stream still running when it fires fails mid-body as a timeout; its upstream is cut', async () => {
    fake.when({ model: 'slow-stream', reply: { chunkDelayMs: 200 } });
    const response = await client.send(chat('slow-stream', true, { totalMs: 700 }));
    expect(response.statusCode).toBe(200);
    let events = 0;
    const read = (async () => {
      for await (const chunk of response.body) events += chunk.toString().split('data: ').length - 1;
    })();
    expect(await failure(read)).toBe('timeout');
    expect(events).toBeGreaterThan(0);
    expect(events).toBeLessThan(12);
    await expect.poll(() => recorded('slow-stream')?.closedEarly).toBe(true);
  });

  it('a stream that ends within totalMs is untouched', async () => {
    fake.when({ model: 'quick-stream', reply: { chunkDelayMs: 10 } });
    const response = await client.send(chat('quick-stream', true, { totalMs: 4000, firstByteMs: 4000 }));
    let text = '';
    for await (const chunk of response.body) text += chunk.toString();
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(recorded('quick-stream')?.closedEarly).toBe(false);
  });
});
