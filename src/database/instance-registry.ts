import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  BeforeApplicationShutdown,
} from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { DataSource } from 'typeorm';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { packageInfo } from '../common/package-info.js';

const HEARTBEAT_MS = 15_000;

/** This instance's row in `instances`: registered at start, refreshed every 15 s, removed at shutdown. */
@Injectable()
export class InstanceRegistry implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('InstanceRegistry');
  readonly id = randomUUID();
  readonly startedAt = new Date();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.dataSource.query(
      `INSERT INTO instances (id, hostname, pid, version, mode, started_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, now())`,
      [this.id, hostname(), process.pid, packageInfo().version, this.config.mode, this.startedAt],
    );
    this.timer = setInterval(() => void this.heartbeat(), HEARTBEAT_MS);
    this.timer.unref();
  }

  private async heartbeat(): Promise<void> {
    try {
      await this.dataSource.query(`UPDATE instances SET last_seen_at = now() WHERE id = $1`, [this.id]);
      // Forget instances that stopped heartbeating a long time ago (killed without a shutdown).
      await this.dataSource.query(`DELETE FROM instances WHERE last_seen_at < now() - interval '1 hour'`);
    } catch (err) {
      this.logger.warn(`instance heartbeat failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.dataSource.query(`DELETE FROM instances WHERE id = $1`, [this.id]).catch(() => undefined);
  }
}
