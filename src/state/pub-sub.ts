import { Logger } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import type { Cluster, Redis } from 'ioredis';

/** How long an unsubscribe waits for Redis' answer before the caller moves on. */
const UNSUBSCRIBE_WAIT_MS = 1000;
/** After a reconnect, when the restored subscriptions are surely active. */
const RESUBSCRIBE_SETTLE_MS = 1000;

export type Unsubscribe = () => Promise<void>;

/** Fire-and-forget messages between instances (cache invalidation, dispatch grants). */
export abstract class PubSub {
  abstract publish(channel: string, message: string): Promise<void>;
  abstract subscribe(channel: string, handler: (message: string) => void): Promise<Unsubscribe>;
  /**
   * The name `channel` has on the wire, for a store script that publishes on it itself (Redis
   * PUBLISH in Lua); null when scripts cannot publish (in process).
   */
  wireChannel(_channel: string): string | null {
    return null;
  }

  /**
   * `listener` runs each time the subscriptions come back after their connection was lost: every
   * message published meanwhile was missed, so a cache kept fresh by messages must be dropped.
   * Never runs in process (nothing can be missed there).
   */
  onResubscribed(_listener: () => void): void {}
}

export class MemoryPubSub extends PubSub {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  publish(channel: string, message: string): Promise<void> {
    // Asynchronous like Redis: a publisher never runs subscriber code on its own stack.
    queueMicrotask(() => this.emitter.emit(channel, message));
    return Promise.resolve();
  }

  subscribe(channel: string, handler: (message: string) => void): Promise<Unsubscribe> {
    this.emitter.on(channel, handler);
    return Promise.resolve(() => {
      this.emitter.off(channel, handler);
      return Promise.resolve();
    });
  }
}

export class RedisPubSub extends PubSub {
  private readonly logger = new Logger('PubSub');
  private readonly handlers = new Map<string, Set<(message: string) => void>>();
  private readonly resubscribed: (() => void)[] = [];

  constructor(
    /** One Redis or a Redis Cluster (PUBLISH is broadcast over the cluster bus). */
    private readonly publisher: Redis | Cluster,
    /** A dedicated connection: a subscribed connection can do nothing else. ioredis resubscribes after reconnects. */
    private readonly subscriber: Redis | Cluster,
    private readonly prefix: string,
  ) {
    super();
    // Lost: the connection closed after it had been ready. When it is 'ready' again (ioredis then
    // restores the subscriptions) the listeners run: anything published while it was gone is lost.
    let wasReady = this.subscriber.status === 'ready';
    let lost = false;
    this.subscriber.on('close', () => {
      if (wasReady) lost = true;
    });
    this.subscriber.on('ready', () => {
      wasReady = true;
      if (!lost) return;
      lost = false;
      this.logger.warn(
        'pub/sub connection is back: caches kept fresh by messages are dropped (some may have been missed)',
      );
      // ioredis emits 'ready' just BEFORE it re-sends the SUBSCRIBEs: a write published in between is
      // missed too, so the caches are dropped again a second later, once the subscriptions are active.
      this.notifyResubscribed();
      setTimeout(() => this.notifyResubscribed(), RESUBSCRIBE_SETTLE_MS).unref();
    });
    this.subscriber.on('message', (channel: string, message: string) => {
      for (const h of this.handlers.get(channel) ?? []) {
        try {
          h(message);
        } catch (err) {
          this.logger.error({ err }, `pub/sub handler for ${channel} failed`);
        }
      }
    });
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.publisher.publish(`${this.prefix}:${channel}`, message);
  }

  override wireChannel(channel: string): string {
    return `${this.prefix}:${channel}`;
  }

  override onResubscribed(listener: () => void): void {
    this.resubscribed.push(listener);
  }

  private notifyResubscribed(): void {
    for (const listener of this.resubscribed) {
      try {
        listener();
      } catch (err) {
        this.logger.error({ err }, 'a pub/sub resubscription listener failed');
      }
    }
  }

  async subscribe(channel: string, handler: (message: string) => void): Promise<Unsubscribe> {
    const full = `${this.prefix}:${channel}`;
    let set = this.handlers.get(full);
    if (!set) {
      set = new Set();
      this.handlers.set(full, set);
      await this.subscriber.subscribe(full);
    }
    set.add(handler);
    return async () => {
      set.delete(handler);
      if (set.size === 0) {
        this.handlers.delete(full);
        // The subscriber waits out outages (its commands queue until Redis is back), so an
        // UNSUBSCRIBE sent while it is down would hold the caller — a shutdown during a Redis outage
        // waited out SHUTDOWN_TIMEOUT_MS. The handler is gone either way: a message that still
        // arrives finds none (and a subscription ioredis restores on reconnect is harmless).
        if (this.subscriber.status !== 'ready') return;
        await Promise.race([
          this.subscriber.unsubscribe(full).catch(() => undefined),
          new Promise<void>((resolve) => setTimeout(resolve, UNSUBSCRIBE_WAIT_MS).unref()),
        ]);
      }
    };
  }
}
