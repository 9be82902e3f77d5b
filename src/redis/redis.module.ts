import { Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { Redis, type RedisOptions } from 'ioredis';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { RedisLiveness } from './redis-liveness.js';

/**
 * Redis connections for distributed mode, by purpose:
 * - `command`: fail fast (no offline queue, short timeout) — admission decisions, health pings;
 *   Redis going away must never hang a request or a probe.
 * - `watched()`: fail fast, judged by RedisLiveness instead of a timeout (the rate limiter).
 * - `blocking()`: patient connections for pub/sub (`maxRetriesPerRequest: null`).
 */
@Injectable()
export class RedisConnections implements OnApplicationShutdown {
  private readonly logger = new Logger('Redis');
  readonly command: Redis;
  private readonly owned: Redis[] = [];
  private lastErrorLog = 0;

  constructor(
    readonly url: string,
    readonly prefix: string,
  ) {
    this.command = this.create('command', {
      // No auto-pipelining: ioredis runs one auto-pipeline per connection at a time, so a command
      // issued while a batch is out waits for that whole batch's replies before it is even written.
      // Under load that stop-and-wait put several ms between a lease's release and the dispatch
      // that hands its slot on (bench contended: release→dispatch reply p50 4–7 ms with it, ~1 ms
      // without). Written at once, commands still queue on the one socket in order.
      enableAutoPipelining: false,
      enableOfflineQueue: false,
      commandTimeout: 1000,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
    });
  }

  /** A fail-fast connection with its own command timeout (a timeout that a busy event loop can trip: prefer `watched`). */
  failFast(name: string, commandTimeoutMs: number): Redis {
    return this.create(name, {
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      commandTimeout: commandTimeoutMs,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
    });
  }

  /**
   * A fail-fast connection whose availability is judged by RedisLiveness (connection state, and
   * Redis' silence while a command waits — never a client-side timeout that a busy event loop can
   * trip): no offline queue (a disconnected Redis fails at once), no command timeout, and no
   * auto-pipelining, so each command is written synchronously and its write time is known.
   */
  watched(name: string, silenceMs: number): { client: Redis; liveness: RedisLiveness } {
    const client = this.create(name, {
      enableAutoPipelining: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
    });
    return { client, liveness: new RedisLiveness(client, silenceMs) };
  }

  /** A connection that waits out outages (`maxRetriesPerRequest: null`: the pub/sub subscriber). */
  patient(name: string): Redis {
    return this.create(name, { maxRetriesPerRequest: null, enableReadyCheck: true });
  }

  private create(name: string, options: RedisOptions): Redis {
    const client = new Redis(this.url, {
      connectionName: `floodgate:${name}`,
      lazyConnect: false,
      retryStrategy: (times) => Math.min(times * 200, 2000),
      ...options,
    });
    client.on('error', (err: Error) => {
      // ioredis emits an error per reconnect attempt; one line every 10 s is enough.
      const now = Date.now();
      if (now - this.lastErrorLog > 10_000) {
        this.lastErrorLog = now;
        this.logger.warn(`redis connection "${name}" error: ${err.message}`);
      }
    });
    this.owned.push(client);
    return client;
  }

  key(...parts: string[]): string {
    return [this.prefix, ...parts].join(':');
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all(
      this.owned.map(async (c) => {
        try {
          if (c.status === 'ready') await c.quit();
          else c.disconnect();
        } catch {
          c.disconnect();
        }
      }),
    );
  }
}

export const REDIS = Symbol('REDIS');

/** Nest calls onApplicationShutdown on the factory's instance, which closes every connection. */
@Module({
  providers: [
    {
      provide: REDIS,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig): RedisConnections | null =>
        config.redis.url ? new RedisConnections(config.redis.url, config.redis.prefix) : null,
    },
  ],
  exports: [REDIS],
})
export class RedisModule {}
