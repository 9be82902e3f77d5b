import { Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PassThrough } from 'node:stream';
import { StatusService } from './status.service.js';

/** Client reconnect delay announced to EventSource-style clients. */
export const SSE_RETRY_MS = 2000;
const TICK_MS = 1000;
const HEARTBEAT_MS = 15_000;
/** Frames buffered for a slow client before its stream is dropped (it reconnects and catches up). */
const MAX_BUFFERED_BYTES = 1024 * 1024;

interface Subscriber {
  stream: PassThrough;
  requestId: string;
}

/**
 * GET /api/admin/status/stream: the status as server-sent events, about once a second.
 *
 * One timer for all subscribers: each tick builds ONE snapshot and writes the same frame to every
 * stream (N dashboards cost one snapshot per second, not N). Frames: `retry: 2000` first, then
 * `event: status` with `id` and the JSON, a `: keep-alive` comment every 15 s, and `event: shutdown`
 * before the stream ends when the instance stops. A client that goes away is removed at once; a
 * client that reads too slowly is dropped rather than buffered without bound.
 */
@Injectable()
export class StatusStream implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('StatusStream');
  private readonly subscribers = new Set<Subscriber>();
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private seq = 0;
  private closing = false;
  private ticking = false;

  constructor(
    private readonly status: StatusService,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  onModuleInit(): void {
    const fastify = this.adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    // Graceful shutdown closes the server first and waits for in-flight requests: open streams
    // would hold it until SHUTDOWN_TIMEOUT_MS, so they end as soon as closing starts.
    fastify?.addHook('preClose', (done) => {
      this.closeAll();
      done();
    });
  }

  onModuleDestroy(): void {
    this.closeAll();
  }

  get size(): number {
    return this.subscribers.size;
  }

  /** Starts a stream on this request (the controller answers with it). */
  open(request: FastifyRequest, reply: FastifyReply): void {
    const stream = new PassThrough();
    const subscriber: Subscriber = { stream, requestId: String(request.id) };
    if (this.closing) {
      stream.end(`retry: ${SSE_RETRY_MS}\n\nevent: shutdown\ndata: {}\n\n`);
    } else {
      this.subscribers.add(subscriber);
      const remove = (): void => this.remove(subscriber);
      stream.once('close', remove);
      reply.raw.once('close', remove);
      stream.write(`retry: ${SSE_RETRY_MS}\n: floodgate status stream\n\n`);
      void this.sendOne(subscriber);
      this.ensureTimers();
    }
    void reply
      .header('content-type', 'text/event-stream; charset=utf-8')
      .header('cache-control', 'no-cache, no-transform')
      .header('x-accel-buffering', 'no')
      .send(stream);
  }

  private ensureTimers(): void {
    if (this.timer === undefined) {
      this.timer = setInterval(() => void this.tick(), TICK_MS);
      this.timer.unref();
    }
    if (this.heartbeat === undefined) {
      this.heartbeat = setInterval(
        () => this.broadcast(`: keep-alive ${new Date().toISOString()}\n\n`),
        HEARTBEAT_MS,
      );
      this.heartbeat.unref();
    }
  }

  private stopTimers(): void {
    clearInterval(this.timer);
    clearInterval(this.heartbeat);
    this.timer = undefined;
    this.heartbeat = undefined;
  }

  private async sendOne(subscriber: Subscriber): Promise<void> {
    try {
      const frame = await this.frame();
      if (this.subscribers.has(subscriber)) this.write(subscriber, frame);
    } catch (err) {
      this.logger.warn(`status snapshot failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.subscribers.size === 0) return;
    this.ticking = true;
    try {
      this.broadcast(await this.frame());
    } catch (err) {
      this.logger.warn(`status snapshot failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      this.ticking = false;
    }
  }

  private async frame(): Promise<string> {
    const snapshot = await this.status.snapshot();
    this.seq += 1;
    return `id: ${this.seq}\nevent: status\ndata: ${JSON.stringify(snapshot)}\n\n`;
  }

  private broadcast(frame: string): void {
    for (const s of this.subscribers) this.write(s, frame);
  }

  private write(subscriber: Subscriber, frame: string): void {
    const { stream } = subscriber;
    if (stream.destroyed || stream.writableEnded) {
      this.remove(subscriber);
      return;
    }
    if (stream.writableLength > MAX_BUFFERED_BYTES) {
      this.logger.warn(`dropping status stream ${subscriber.requestId}: the client is not reading`);
      stream.destroy();
      this.remove(subscriber);
      return;
    }
    stream.write(frame);
  }

  private remove(subscriber: Subscriber): void {
    if (!this.subscribers.delete(subscriber)) return;
    if (!subscriber.stream.writableEnded) subscriber.stream.end();
    if (this.subscribers.size === 0) this.stopTimers();
  }

  /** Ends every stream with `event: shutdown` (the instance is stopping). */
  closeAll(): void {
    this.closing = true;
    for (const s of [...this.subscribers]) {
      if (!s.stream.destroyed && !s.stream.writableEnded) s.stream.write('event: shutdown\ndata: {}\n\n');
      this.remove(s);
    }
    this.stopTimers();
  }
}
