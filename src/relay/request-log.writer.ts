import { Injectable, Logger, BeforeApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { RequestLogRow } from './request-log.entity.js';

export type RequestLogEntry = Omit<RequestLogRow, 'id'>;

const FLUSH_INTERVAL_MS = 1000;
const FLUSH_AT_ROWS = 500;
const MAX_BUFFERED = 20_000;

/**
 * The relay's request log, written in batches: rows collect in memory and go to Postgres in one
 * multi-row INSERT every second (or every 500 rows), and on shutdown. A failed flush keeps the rows
 * for the next attempt (bounded), so a Postgres restart loses no row of a completed request.
 */
@Injectable()
export class RequestLogWriter implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('RequestLog');
  private buffer: RequestLogEntry[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private dropped = 0;
  written = 0;

  constructor(@InjectRepository(RequestLogRow) private readonly rows: Repository<RequestLogRow>) {}

  onModuleInit(): void {
    this.timer = setInterval(() => void this.flush(), FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  add(entry: RequestLogEntry): void {
    this.buffer.push(entry);
    if (this.buffer.length > MAX_BUFFERED) {
      this.buffer.splice(0, this.buffer.length - MAX_BUFFERED);
      this.dropped++;
    }
    if (this.buffer.length >= FLUSH_AT_ROWS) void this.flush();
  }

  get pending(): number {
    return this.buffer.length;
  }

  async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    this.flushing = (async () => {
      try {
        for (let i = 0; i < batch.length; i += FLUSH_AT_ROWS) {
          await this.insert(batch.slice(i, i + FLUSH_AT_ROWS));
        }
        this.written += batch.length;
        if (this.dropped > 0) {
          this.logger.warn(
            `request log buffer overflowed ${this.dropped} time(s) while Postgres was unavailable`,
          );
          this.dropped = 0;
        }
      } catch (err) {
        this.buffer = batch.concat(this.buffer).slice(-MAX_BUFFERED);
        this.logger.warn(
          `request log flush of ${batch.length} rows failed, will retry: ${(err as Error).message}`,
        );
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  /**
   * One statement per batch, one array parameter per column (unnest): building a TypeORM insert of
   * 500 entities costs tens of ms of CPU on the event loop; this costs next to nothing.
   */
  private async insert(rows: RequestLogEntry[]): Promise<void> {
    const col = <K extends keyof RequestLogEntry>(k: K) => rows.map((r) => r[k]);
    await this.rows.query(
      `INSERT INTO request_log (created_at, request_id, api_key_id, user_id, provider_id, provider_key_id, endpoint, model,
         priority, status, error_code, prompt_tokens, completion_tokens, queue_ms, upstream_ms, overhead_ms, attempts, stream)
       SELECT * FROM unnest($1::timestamptz[], $2::varchar[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::varchar[],
         $8::varchar[], $9::varchar[], $10::int[], $11::varchar[], $12::int[], $13::int[], $14::int[], $15::int[], $16::int[],
         $17::smallint[], $18::boolean[])`,
      [
        col('createdAt'),
        col('requestId'),
        col('apiKeyId'),
        col('userId'),
        col('providerId'),
        col('providerKeyId'),
        col('endpoint'),
        col('model'),
        col('priority'),
        col('status'),
        col('errorCode'),
        col('promptTokens'),
        col('completionTokens'),
        col('queueMs'),
        col('upstreamMs'),
        col('overheadMs'),
        col('attempts'),
        col('stream'),
      ],
    );
  }

  /** Before shutdown hooks: the database pool closes in onApplicationShutdown. */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
