import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { FastifyReply } from 'fastify';
import type { KeyLease } from '../../key-pool/key-pool.types.js';
import type { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';
import { exchangeFor } from '../domain/exchange.js';
import type { UpstreamBody } from '../infrastructure/upstream-client.js';
import { ClientGone } from './client-gone.js';
import type { LeaseKeeper } from './lease-keeper.js';
import { SseResponder } from './sse-responder.js';

/** An upstream body the test feeds chunk by chunk (`push`, then `end`). */
function controlledBody(): UpstreamBody & { push(s: string): void; end(): void } {
  const chunks: Buffer[] = [];
  let ended = false;
  let wake: (() => void) | null = null;
  const poke = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  return {
    get hasChunk() {
      return chunks.length > 0;
    },
    push(s: string) {
      chunks.push(Buffer.from(s));
      poke();
    },
    end() {
      ended = true;
      poke();
    },
    text: () => Promise.reject(new Error('not read as text')),
    [Symbol.asyncIterator]: () => ({
      next: async (): Promise<IteratorResult<Buffer>> => {
        for (;;) {
          const c = chunks.shift();
          if (c) return { done: false, value: c };
          if (ended) return { done: true, value: undefined };
          await new Promise<void>((r) => (wake = r));
        }
      },
    }),
  };
}

function harness(body: UpstreamBody) {
  const writes: string[] = [];
  const raw = {
    writeHead: vi.fn(),
    flushHeaders: vi.fn(() => writes.push('<headers>')),
    write: vi.fn((s: string) => writes.push(s)),
    end: vi.fn(),
    destroy: vi.fn(),
  };
  const reply = {
    raw,
    elapsedTime: 1,
    getHeaders: () => ({}),
    hijack: vi.fn(),
  } as unknown as FastifyReply;
  const leases = { release: vi.fn(() => Promise.resolve()) } as unknown as LeaseKeeper;
  const observe = vi.fn();
  const metrics = { hot: { upstreamTtft: { get2: () => ({ observe }) } } } as unknown as FloodgateMetrics;
  const responder = new SseResponder(leases, metrics);
  const answer = responder.respond({
    reply,
    lease: { keyId: 'k1' } as KeyLease,
    response: { statusCode: 200, headers: { 'content-type': 'text/event-stream' }, body },
    exchange: exchangeFor('chat', 'openai')!,
    injectedUsage: true,
    startedAt: 0,
    queueMs: 0,
    upstreamMs: 0,
    alias: null,
    signal: new ClientGone(),
    providerName: 'p',
    modelLabel: 'm',
    requestId: 'req-1',
  });
  return { writes, raw, answer, responder };
}

const event = (content: string) =>
  `data: ${JSON.stringify({ id: 'c', choices: [{ index: 0, delta: { content } }] })}\n\n`;

describe('SseResponder', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('writes a keep-alive comment once a stream has been silent for 15 s (not only on 15 s ticks from its start)', async () => {
    const body = controlledBody();
    const { writes, answer, responder } = harness(body);
    await vi.advanceTimersByTimeAsync(1_000);
    body.push(event('hi'));
    await vi.advanceTimersByTimeAsync(0);
    expect(writes).toEqual(['<headers>', event('hi')]);
    // 14 s after the event: still quiet enough
    await vi.advanceTimersByTimeAsync(14_000);
    expect(writes.filter((w) => w.startsWith(': keep-alive'))).toHaveLength(0);
    // 15–16 s of silence: the comment
    await vi.advanceTimersByTimeAsync(2_000);
    expect(writes.filter((w) => w.startsWith(': keep-alive'))).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(15_000);
    expect(writes.filter((w) => w.startsWith(': keep-alive'))).toHaveLength(2);
    body.push('data: [DONE]\n\n');
    body.end();
    const a = await answer;
    expect(a).toMatchObject({ status: 200, outcome: 'ok' });
    expect(writes.at(-1)).toBe('data: [DONE]\n\n');
    responder.onApplicationShutdown();
  });

  it('sends the headers with the first event when it is already here (no flush of their own)', async () => {
    const body = controlledBody();
    body.push(event('a'));
    const { writes, raw, answer } = harness(body);
    body.push('data: [DONE]\n\n');
    body.end();
    await vi.advanceTimersByTimeAsync(10);
    await answer;
    expect(raw.flushHeaders).not.toHaveBeenCalled();
    expect(writes).toEqual([event('a'), 'data: [DONE]\n\n']);
    expect(raw.end).toHaveBeenCalledOnce();
  });

  it('flushes the headers on their own when the first event is not here yet', async () => {
    const body = controlledBody();
    const { writes, raw, answer } = harness(body);
    await vi.advanceTimersByTimeAsync(1);
    expect(raw.flushHeaders).toHaveBeenCalledOnce();
    body.push(event('a'));
    body.end();
    await answer;
    expect(writes).toEqual(['<headers>', event('a')]);
  });
});
