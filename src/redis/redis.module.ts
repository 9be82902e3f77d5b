import { Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { Redis, type RedisOptions } from 'ioredis';
import type { Socket as NetStream } from 'node:net';
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
      // Not ioredis' auto-pipelining: it runs one batch per connection at a time, so a command
      // issued while a batch is out waits for that whole batch's replies before it is even written
      // — the dispatch that hands a released slot on waited for the release's reply (and under
      // load for whatever batch was out: release→dispatch reply p50 4–7 ms in the contended bench,
      // ~1 ms without). coalesceWrites keeps the one write per tick without the wait.
      enableAutoPipelining: false,
      enableOfflineQueue: false,
      commandTimeout: 1000,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
    });
    coalesceWrites(this.command);
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

/**
 * Commands issued in the same turn of the event loop leave in one write (one syscall here, one read
 * for Redis), as with auto-pipelining, but a batch never waits for an earlier batch's replies: the
 * socket is corked at the first command and uncorked once the loop has run this turn's I/O callbacks
 * (setImmediate). A lease's release and the dispatch behind it go out together. (Uncorking on the
 * next tick instead split them and cost Redis ~15 % more CPU per request at 8–32 clients: fewer
 * commands per read.) Order is the socket's, unchanged.
 */
function coalesceWrites(client: Redis): void {
  let corked = false;
  const send = client.sendCommand.bind(client);
  client.sendCommand = ((...args: Parameters<Redis['sendCommand']>) => {
    const socket = client.stream as NetStream | undefined;
    if (!corked && args[1] === undefined && client.status === 'ready' && socket?.writable) {
      corked = true;
      socket.cork();
      setImmediate(() => {
        corked = false;
        socket.uncork();
      });
    }
    return send(...args);
  }) as Redis['sendCommand'];
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
