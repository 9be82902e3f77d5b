import { Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { AppConfig, RedisNode } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { ClusterLiveness, RedisLiveness, type LivenessSource } from './redis-liveness.js';

/** A connection to one Redis (REDIS_URL) or to a Redis Cluster (REDIS_CLUSTER_NODES). */
export type RedisClient = Redis | Cluster;

/** Where the connections go: one Redis by URL, or the seed nodes of a cluster. */
export type RedisTarget = { url: string } | { nodes: RedisNode[] };

/**
 * Redis connections for distributed mode, by purpose:
 * - `command`: fail fast (no offline queue, short timeout) — admission decisions, health pings;
 *   Redis going away must never hang a request or a probe.
 * - `watched()`: fail fast, judged by RedisLiveness instead of a timeout (the rate limiter).
 * - `blocking()`: patient connections for pub/sub (`maxRetriesPerRequest: null`).
 *
 * On a Redis Cluster (REDIS_CLUSTER_NODES) each is an ioredis `Cluster` client with the same
 * per-purpose options (the cluster-level and the per-node ones): it routes every command to the
 * master owning its keys' slot and follows MOVED/ASK. Callers see the same command surface.
 */
@Injectable()
export class RedisConnections implements OnApplicationShutdown {
  private readonly logger = new Logger('Redis');
  readonly command: RedisClient;
  private readonly owned: RedisClient[] = [];
  private lastErrorLog = 0;

  constructor(
    readonly target: RedisTarget,
    readonly prefix: string,
  ) {
    this.command = this.create('command', {
      // Commands issued in the same tick share one write (the relay's scripts, pub/sub publishes).
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      commandTimeout: 1000,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
    });
  }

  /** A fail-fast connection with its own command timeout (a timeout that a busy event loop can trip: prefer `watched`). */
  /** True on a Redis Cluster: multi-slot work must be split into single-slot steps. */
  get cluster(): boolean {
    return 'nodes' in this.target;
  }

  failFast(name: string, commandTimeoutMs: number): RedisClient {
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
  watched(name: string, silenceMs: number): { client: RedisClient; liveness: LivenessSource } {
    const client = this.create(name, {
      enableAutoPipelining: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
    });
    const liveness =
      client instanceof Cluster
        ? new ClusterLiveness(client, silenceMs, this.prefix)
        : new RedisLiveness(client, silenceMs);
    return { client, liveness };
  }

  /** A connection that waits out outages (`maxRetriesPerRequest: null`: the pub/sub subscriber). */
  patient(name: string): RedisClient {
    return this.create(name, { maxRetriesPerRequest: null, enableReadyCheck: true });
  }

  /**
   * PINGs every master on the command connection (one Redis: that Redis) — the readiness probe. A
   * cluster client that is not ready (slot map unknown, no master) fails.
   */
  async pingMasters(): Promise<void> {
    const c = this.command;
    if (!(c instanceof Cluster)) {
      await c.ping();
      return;
    }
    const masters = c.nodes('master');
    if (c.status !== 'ready' || masters.length === 0)
      throw new Error(`redis cluster client is ${c.status} with ${masters.length} master(s) known`);
    await Promise.all(
      masters.map((m) =>
        m.ping().catch((err: unknown) => {
          throw new Error(
            `master ${m.options.host}:${m.options.port}: ${err instanceof Error ? err.message : String(err)}`,
          );
        }),
      ),
    );
  }

  private create(name: string, options: RedisOptions): RedisClient {
    const client =
      'nodes' in this.target
        ? this.createCluster(name, this.target.nodes, options)
        : this.createOne(name, this.target.url, options);
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

  private createOne(name: string, url: string, options: RedisOptions): Redis {
    return new Redis(url, {
      connectionName: `floodgate:${name}`,
      lazyConnect: false,
      retryStrategy: (times) => Math.min(times * 200, 2000),
      ...options,
    });
  }

  /**
   * A Cluster client with `options` split the way ioredis takes them: offline queue, auto-pipelining
   * and the ready check at the cluster level (a command is refused at once while the cluster is not
   * ready, when `enableOfflineQueue` is false); timeouts and retries per node.
   */
  private createCluster(name: string, nodes: RedisNode[], options: RedisOptions): Cluster {
    const { enableAutoPipelining, enableOfflineQueue, enableReadyCheck, ...perNode } = options;
    const clusterOptions: ClusterOptions = {
      enableAutoPipelining: enableAutoPipelining ?? false,
      enableOfflineQueue: enableOfflineQueue ?? true,
      enableReadyCheck: enableReadyCheck ?? true,
      clusterRetryStrategy: (times) => Math.min(times * 200, 2000),
      redisOptions: { connectionName: `floodgate:${name}`, ...perNode },
    };
    const cluster = new Cluster(
      nodes.map((n) => ({ host: n.host, port: n.port })),
      clusterOptions,
    );
    // Node connections are connected as soon as the cluster is ready (ioredis connects them lazily,
    // on their first command, and a node still `connecting` refuses commands when the offline queue
    // is off: a burst right after start would fail them all). Never before `ready`: a node caught
    // `connecting` by the cluster's own ready check makes the whole client reconnect.
    const connect = (node: Redis): void => {
      if (cluster.status === 'ready' && node.status === 'wait') node.connect().catch(() => undefined);
    };
    const connectAll = (): void => cluster.nodes('all').forEach(connect);
    cluster.on('ready', connectAll);
    cluster.on('refresh', connectAll);
    cluster.on('+node', connect);
    return cluster;
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
      useFactory: (config: AppConfig): RedisConnections | null => {
        const { url, nodes, prefix } = config.redis;
        if (nodes) return new RedisConnections({ nodes }, prefix);
        return url ? new RedisConnections({ url }, prefix) : null;
      },
    },
  ],
  exports: [REDIS],
})
export class RedisModule {}
