import { BeforeApplicationShutdown, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { DataSource } from 'typeorm';

export const USAGE_FLUSH_INTERVAL_MS = 5_000;

/**
 * `api_keys.last_used_at` and `users.last_seen_at`, batched: the hot path only records an id and a
 * time in memory; every few seconds (and at shutdown) one UPDATE per table writes them all.
 * Never one write per request.
 */
@Injectable()
export class UsageRecorder implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('UsageRecorder');
  private keys = new Map<string, number>();
  private users = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | null = null;

  constructor(private readonly dataSource: DataSource) {}

  onModuleInit(): void {
    this.timer = setInterval(() => void this.flush(), USAGE_FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  touch(userId: string, apiKeyId: string | null, now = Date.now()): void {
    this.users.set(userId, now);
    if (apiKeyId) this.keys.set(apiKeyId, now);
  }

  get pending(): number {
    return this.keys.size + this.users.size;
  }

  async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.keys.size === 0 && this.users.size === 0) return;
    const keys = this.keys;
    const users = this.users;
    this.keys = new Map();
    this.users = new Map();
    this.flushing = this.write(keys, users).finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async write(keys: Map<string, number>, users: Map<string, number>): Promise<void> {
    try {
      if (keys.size > 0) {
        await this.dataSource.query(
          `UPDATE api_keys k SET last_used_at = v.t
             FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, t)
            WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.t)`,
          [[...keys.keys()], [...keys.values()].map((t) => new Date(t).toISOString())],
        );
      }
      if (users.size > 0) {
        await this.dataSource.query(
          `UPDATE users u SET last_seen_at = v.t
             FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, t)
            WHERE u.id = v.id AND (u.last_seen_at IS NULL OR u.last_seen_at < v.t)`,
          [[...users.keys()], [...users.values()].map((t) => new Date(t).toISOString())],
        );
      }
    } catch (err) {
      // Lost timestamps are harmless; they are refreshed by the next request.
      this.logger.warn(
        `could not record key/user usage: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
