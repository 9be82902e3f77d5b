import { Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';
import { gatewayTiming } from '../domain/gateway-headers.js';
import { clientResponseHeaders } from '../domain/headers.js';
import { streamInterruptedEvent, streamKeyOutcome } from '../domain/outcome.js';
import type { UpstreamFailure } from '../domain/retry-table.js';
import { SseRelay } from '../domain/sse-relay.js';
import { classify } from '../infrastructure/upstream-client.js';
import type { Answer, RespondInput } from './answer.js';
import type { ClientGone } from './client-gone.js';
import { LeaseKeeper } from './lease-keeper.js';

const KEEPALIVE_MS = 15_000;
/** How often the one keep-alive sweep looks at every open stream: a silent stream's comment comes 15–16 s after its last write. */
const KEEPALIVE_TICK_MS = 1_000;

/** An open stream, as the keep-alive sweep sees it. */
interface LiveStream {
  raw: ServerResponse;
  /** Date.now() of the last write to the client. */
  lastWrite: number;
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
  connection: 'keep-alive',
};

export interface StreamInput extends RespondInput {
  signal: ClientGone;
  providerName: string;
  modelLabel: string;
  requestId: string;
}

/**
 * A 200 stream: server-sent events written as they arrive (never more than one incomplete event
 * held), a keep-alive comment every 15 s of upstream silence, usage read on the way; a stream the
 * upstream cuts ends with a final error event.
 */
@Injectable()
export class SseResponder implements OnApplicationShutdown {
  /** Streams open now; one timer sweeps them all for keep-alives (not one interval per stream). */
  private readonly live = new Set<LiveStream>();
  private ticker: NodeJS.Timeout | null = null;

  constructor(
    private readonly leases: LeaseKeeper,
    private readonly metrics: FloodgateMetrics,
  ) {}

  onApplicationShutdown(): void {
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
  }

  /** Open streams silent for 15 s get a `: keep-alive` comment. */
  private sweep(): void {
    const now = Date.now();
    for (const stream of this.live) {
      if (now - stream.lastWrite >= KEEPALIVE_MS) {
        stream.raw.write(': keep-alive\n\n');
        stream.lastWrite = now;
      }
    }
    if (this.live.size === 0 && this.ticker !== null) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
  }

  async respond(input: StreamInput): Promise<Answer> {
    const { reply, lease, response, startedAt, queueMs } = input;
    const ttfbMs = performance.now() - startedAt;
    const { overheadMs, headers: ours } = gatewayTiming(
      reply.elapsedTime,
      queueMs,
      input.upstreamMs + ttfbMs,
      lease.keyId,
    );
    this.metrics.hot.upstreamTtft.get2(input.providerName, input.modelLabel).observe(ttfbMs / 1000);
    // One header object: the upstream's, then the reply's (x-request-id, rate-limit headers), then ours.
    const headers: Record<string, string | number | string[]> = clientResponseHeaders(response.headers);
    Object.assign(headers, reply.getHeaders(), ours, SSE_HEADERS);
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, headers);
    // The headers go out with the first event when it is already here (one write, not two: the
    // upstream's headers and first event usually arrive together, and then no timer is set); on
    // their own otherwise, at the latest one turn of the event loop later.
    let wrote = false;
    const flush =
      response.body.hasChunk === true
        ? null
        : setImmediate(() => {
            if (!wrote) raw.flushHeaders();
          });
    const sse = new SseRelay(input.exchange.stream(input.injectedUsage, input.alias));
    const live: LiveStream = { raw, lastWrite: Date.now() };
    this.live.add(live);
    if (this.ticker === null) {
      this.ticker = setInterval(() => this.sweep(), KEEPALIVE_TICK_MS);
      this.ticker.unref();
    }
    let failure: UpstreamFailure | null = null;
    // A stored answer's id is recorded before the event that carries it reaches the client.
    let onCreated = input.onCreated;
    try {
      for await (const chunk of response.body) {
        const out = sse.push(chunk as Buffer);
        if (onCreated && sse.reader.createdId) {
          onCreated(sse.reader.createdId);
          onCreated = undefined;
        }
        if (out) {
          raw.write(out);
          input.capture?.add(out);
          wrote = true;
          live.lastWrite = Date.now();
        }
      }
      const rest = sse.end();
      if (rest) {
        raw.write(rest);
        input.capture?.add(rest);
      }
    } catch (err) {
      failure = classify(err).kind;
    } finally {
      if (flush !== null) clearImmediate(flush);
      this.live.delete(live);
    }
    const promptTokens = sse.usage?.prompt ?? 0;
    const completionTokens = sse.completionTokens();
    const clientGone = input.signal.aborted || failure === 'aborted';
    const answer: Answer = {
      status: clientGone ? 499 : 200,
      outcome: clientGone ? 'canceled' : failure ? 'upstream_error' : 'ok',
      errorCode: !clientGone && failure ? 'upstream_stream_interrupted' : null,
      promptTokens,
      completionTokens,
      cachedPromptTokens: sse.usage?.cached ?? 0,
      upstreamMs: input.upstreamMs + (performance.now() - startedAt),
      overheadMs,
    };
    try {
      await this.leases.release(
        lease,
        streamKeyOutcome(failure, clientGone, promptTokens + completionTokens),
        { promptTokens, completionTokens, cachedPromptTokens: answer.cachedPromptTokens ?? 0 },
      );
    } catch (error) {
      return { ...answer, status: 200, outcome: 'ok', errorCode: null, error };
    }
    if (clientGone) raw.destroy();
    else {
      if (failure) raw.write((input.exchange.interrupted ?? streamInterruptedEvent)(input.requestId));
      raw.end();
    }
    return answer;
  }
}
