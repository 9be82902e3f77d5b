import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { RequestsRepository } from '../infrastructure/requests.repository.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** Rows per DELETE (bounded: no long lock, no huge transaction). */
export const RETENTION_CHUNK = 1000;
/** Chunks per run at most (1,000,000 rows an hour); the rest waits for the next run. */
const MAX_CHUNKS = 1000;

/**
 * Deletes captured bodies older than BODY_CAPTURE_RETENTION_DAYS, every hour on every instance. Each
 * chunk is a DELETE of rows picked FOR UPDATE SKIP LOCKED, so instances running at once delete
 * disjoint rows and never wait on each other; what it deleted is logged.
 */
@Injectable()
export class BodyRetentionService implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('BodyRetention');
  private readonly retentionDays: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | null = null;

  constructor(
    private readonly repository: RequestsRepository,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.retentionDays = config.requests.bodyCaptureRetentionDays;
  }

  onModuleInit(): void {
    this.timer = setInterval(() => void this.sweep(), HOUR_MS);
    this.timer.unref();
  }

  /** One run (a run already under way is joined, not doubled). Returns how many bodies it deleted. */
  sweep(now = Date.now()): Promise<number> {
    this.running ??= this.run(now).finally(() => (this.running = null));
    return this.running;
  }

  private async run(now: number): Promise<number> {
    const before = new Date(now - this.retentionDays * DAY_MS);
    let deleted = 0;
    try {
      for (let i = 0; i < MAX_CHUNKS; i++) {
        const n = await this.repository.deleteBodiesBefore(before, RETENTION_CHUNK);
        deleted += n;
        if (n < RETENTION_CHUNK) break;
      }
    } catch (err) {
      this.logger.warn(`Captured-body retention failed after ${deleted} deleted: ${(err as Error).message}`);
      return deleted;
    }
    if (deleted > 0)
      this.logger.log(
        `Deleted ${deleted} captured request bodies older than ${this.retentionDays} days (before ${before.toISOString()})`,
      );
    return deleted;
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
