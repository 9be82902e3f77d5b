import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { RetryingBatch } from '../../database/retrying-batch.js';
import { storableText } from '../../database/storable-text.js';
import { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';
import { RequestLogRow, type StoredAttempt } from './request-log.entity.js';

/** A row to write; `routeId` and `attemptLog` may be left out (stored as NULL). */
export type RequestLogEntry = Omit<RequestLogRow, 'id' | 'routeId' | 'attemptLog'> & {
  routeId?: string | null;
  attemptLog?: readonly StoredAttempt[] | null;
};

/** Attempts kept per row (the relay makes a handful; a runaway list is cut, not refused). */
const MAX_STORED_ATTEMPTS = 32;

const FLUSH_INTERVAL_MS = 1000;
const FLUSH_AT_ROWS = 500;

/**
 * The relay's request log, written in batches: rows collect in memory and go to Postgres in one
 * multi-row INSERT every second (or every 500 rows), and on shutdown. Text columns (and the strings
 * inside `attempt_log`) are made storable first (no NUL, no lone surrogate, cut to the column's
 * length), and the batching is the
 * shared RetryingBatch: an unreachable Postgres keeps the rows (up to WRITE_BUFFER_MAX_ENTRIES) and
 * retries with backoff; a row Postgres still refuses is dropped alone, never its batch.
 */
@Injectable()
export class RequestLogWriter implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('RequestLog');
  private readonly batch: RetryingBatch<RequestLogEntry>;
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;

  constructor(
    @InjectRepository(RequestLogRow) private readonly rows: Repository<RequestLogRow>,
    @Inject(APP_CONFIG) config: AppConfig,
    metrics: FloodgateMetrics,
  ) {
    this.batch = new RetryingBatch<RequestLogEntry>({
      name: 'request_log',
      unit: 'request log rows',
      chunkSize: FLUSH_AT_ROWS,
      maxEntries: config.database.writeBufferMaxEntries,
      write: (entries) => this.insert(entries.map(([, row]) => row)),
      logger: this.logger,
      metrics,
      describe: (_key, row) =>
        `request ${storableText(row.requestId, 128)} (${row.endpoint}, status ${row.status})`,
    });
  }

  onModuleInit(): void {
    this.timer = setInterval(() => this.batch.tick(), FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  add(entry: RequestLogEntry): void {
    this.batch.add(String(++this.seq), storable(entry));
    if (this.batch.size >= FLUSH_AT_ROWS) this.batch.tick();
  }

  get pending(): number {
    return this.batch.size;
  }

  /** Rows written since the start. */
  get written(): number {
    return this.batch.written;
  }

  /** Rows given up on since the start (refused by Postgres, buffer full, or unwritten at shutdown). */
  get droppedRows(): number {
    const d = this.batch.dropped;
    return d.rejected + d.buffer_full + d.shutdown;
  }

  /** Writes every buffered row now (an unreachable Postgres keeps them for the next attempt). */
  flush(): Promise<void> {
    return this.batch.flush();
  }

  /**
   * One statement per batch, one array parameter per column (unnest): building a TypeORM insert of
   * 500 entities costs tens of ms of CPU on the event loop; this costs next to nothing.
   */
  private async insert(rows: RequestLogEntry[]): Promise<void> {
    const col = <K extends keyof RequestLogEntry>(k: K) => rows.map((r) => r[k]);
    await this.rows.query(
      `INSERT INTO request_log (created_at, request_id, api_key_id, user_id, provider_id, provider_key_id, endpoint, model,
         priority, status, error_code, prompt_tokens, completion_tokens, queue_ms, upstream_ms, overhead_ms, attempts, stream,
         route_id, attempt_log)
       SELECT * FROM unnest($1::timestamptz[], $2::varchar[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::varchar[],
         $8::varchar[], $9::varchar[], $10::int[], $11::varchar[], $12::int[], $13::int[], $14::int[], $15::int[], $16::int[],
         $17::smallint[], $18::boolean[], $19::uuid[], $20::jsonb[])`,
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
        rows.map((r) => r.routeId ?? null),
        // JSON text per row; jsonb parses it (strings were made storable in `add`)
        rows.map((r) => (r.attemptLog ? JSON.stringify(r.attemptLog) : null)),
      ],
    );
  }

  /** Before shutdown hooks: the database pool closes in onApplicationShutdown. */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.batch.close();
  }
}

/** Every text column within what Postgres stores (lengths from RequestLogRow). */
function storable(e: RequestLogEntry): RequestLogEntry {
  return {
    ...e,
    requestId: storableText(e.requestId, 128),
    endpoint: storableText(e.endpoint, 32),
    model: storableText(e.model, 255),
    priority: storableText(e.priority, 8),
    errorCode: storableText(e.errorCode, 64),
    attemptLog: e.attemptLog ? e.attemptLog.slice(0, MAX_STORED_ATTEMPTS).map(storableAttempt) : null,
  };
}

/**
 * An attempt jsonb accepts: its strings without NUL or lone surrogates (JSON.stringify would write
 * them as \u0000 / \ud800 escapes, which jsonb refuses, losing the row), of bounded length.
 */
function storableAttempt(a: StoredAttempt): StoredAttempt {
  return {
    attempt: a.attempt,
    provider_id: storableText(a.provider_id, 64),
    model: storableText(a.model, 255),
    key_id: storableText(a.key_id, 64),
    status: a.status,
    outcome: storableText(a.outcome, 32),
    ms: a.ms,
  };
}
