import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import { AdmissionGrants } from '../../src/relay/admission-grants.js';
import { openStream, pollUntil, readSse } from '../support/cluster.js';
import type { RecordedRequest } from '../support/fake-provider.js';
import { MODES } from '../support/gateway.js';
import { startRelay, type RelayFixture } from '../support/relay.js';

/**
 * An upstream that answers its headers at once but holds its first SSE event (1.5 s): the client
 * gets the status and the gateway's headers while the upstream still holds that event (ordering
 * read from the fake provider's record, not from a clock), then the whole stream ending in [DONE].
 * A client that leaves during that hold frees its lease.
 */
const FIRST_EVENT_DELAY_MS = 1500;

/** The headers CONTRACT.md promises on relay answers, streams included. */
const PROMISED = [
  'x-request-id',
  'x-floodgate-queue-ms',
  'x-floodgate-overhead-ms',
  'x-floodgate-provider-key',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'ratelimit-policy',
  'ratelimit',
];

describe.each(MODES)('stream whose upstream holds its first event (%s mode)', (mode) => {
  let fx: RelayFixture;
  const keyId = () => fx.keyIds['sk-slow']!;
  beforeAll(async () => {
    fx = await startRelay(mode, { keys: [{ key: 'sk-slow' }] });
  });
  afterAll(async () => {
    await fx?.close();
  });
  beforeEach(() => {
    fx.fake.reset();
    fx.fake.when({ reply: { firstEventDelayMs: FIRST_EVENT_DELAY_MS } });
  });

  const upstream = (): RecordedRequest => {
    expect(fx.fake.requests).toHaveLength(1);
    return fx.fake.requests[0]!;
  };
  const inFlight = async () =>
    (await fx.gw.app.get(KeyPoolService).windows(fx.providerId, [keyId()]))[0]!.inFlight;

  it('status and headers reach the client while the upstream holds its first event; then the stream completes with [DONE]', async () => {
    const res = await openStream(fx.gw.url, fx.adminKey, 'slow-first');
    // The response (status + headers) is here: the upstream has sent its headers but not yet its first event.
    const seen = upstream();
    expect(seen.headersSentAt).toBeDefined();
    expect(seen.firstEventAt).toBeUndefined();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    for (const name of PROMISED) expect(res.headers.get(name), name).toBeTruthy();
    expect(res.headers.get('x-floodgate-provider-key')).toBe(keyId());

    const read = await readSse(res);
    expect(read.broken).toBe(false);
    expect(read.error).toBeNull();
    expect(read.done).toBe(true);
    expect(read.events.at(-1)).toBe('[DONE]');
    const text = read.events
      .map((e) => (e as { choices?: { delta?: { content?: string } }[] }).choices?.[0]?.delta?.content ?? '')
      .join('');
    expect(text).toBe(fx.fake.text);
    expect(upstream().firstEventAt).toBeDefined();
    expect(upstream().closedEarly).toBe(false);
    await pollUntil(async () => (await inFlight()) === 0, {
      timeoutMs: 2000,
      intervalMs: 10,
      what: 'the key to have nothing in flight',
    });
  });

  it('the openai SDK: the stream object (response headers) arrives before the first event, then every chunk', async () => {
    const { data: stream, response } = await fx.client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'slow-sdk' }], stream: true })
      .withResponse();
    expect(upstream().headersSentAt).toBeDefined();
    expect(upstream().firstEventAt).toBeUndefined();
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    for (const name of PROMISED) expect(response.headers.get(name), name).toBeTruthy();

    const deltas: string[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice?.delta?.content) deltas.push(choice.delta.content);
      if (choice?.finish_reason) finish = choice.finish_reason;
    }
    expect(deltas.join('')).toBe(fx.fake.text);
    expect(finish).toBe('stop');
    expect(upstream().closedEarly).toBe(false);
  });

  it('a client that leaves while the upstream holds its first event: the upstream request is closed and the lease freed', async () => {
    const controller = new AbortController();
    const res = await openStream(fx.gw.url, fx.adminKey, 'slow-leave', { signal: controller.signal });
    expect(res.status).toBe(200);
    expect(upstream().firstEventAt).toBeUndefined();
    // the request's lease, plus the units a local admission grant of its block holds (distributed,
    // docs/scaling.md "Local admission grants": reserved in the key's in-flight set until given back)
    expect(await inFlight()).toBe(1 + fx.gw.app.get(AdmissionGrants).unitsHeld());
    controller.abort();
    const { value: seen } = await pollUntil(() => (upstream().endedAt !== undefined ? upstream() : false), {
      timeoutMs: 5000,
      intervalMs: 10,
      what: 'the upstream request to end',
    });
    // Closed by the gateway during the hold, not finished by the upstream.
    expect(seen.closedEarly).toBe(true);
    expect(seen.firstEventAt).toBeUndefined();
    await pollUntil(async () => (await inFlight()) === 0, {
      timeoutMs: 5000,
      intervalMs: 10,
      what: 'the key to have nothing in flight',
    });
  });
});
