import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { Repository } from 'typeorm';
import type { AppConfig } from '../../config/app-config.js';
import { APP_CONFIG } from '../../config/config.module.js';
import { RetryingBatch } from '../../database/retrying-batch.js';
import { storableText } from '../../database/storable-text.js';
import { FloodgateMetrics } from '../../metrics/floodgate-metrics.js';
import type { StoredBodies } from '../../requests/services/body-capture.service.js';
import { RequestLogRow, type StoredAttempt } from './request-log.entity.js';

/**
 * A row to write; `routeId`, `attemptLog`, `costMicroUsd`, `servedModel`, `teamId` and `bodies` may be
 * left out (stored as NULL; `bodies`: no request_bodies row). `servedModel` and `teamId` also key the
 * spend rollup.
 */
export type RequestLogEntry = Omit<
  RequestLogRow,
  'id' | 'routeId' | 'attemptLog' | 'costMicroUsd' | 'servedModel' | 'teamId'
> & {
  routeId?: string | null;
  attemptLog?: readonly StoredAttempt[] | null;
  /** Integer micro-dollars; null: no price known or no provider. */
  costMicroUsd?: number | null;
  /** The model the provider served (a route target's model) for the rollup; absent: `model`. */
  servedModel?: string | null;
  /** The team the request is charged to, for the rollup; absent: none. */
  teamId?: string | null;
  /** Captured bodies (docs/requests.md), already redacted and capped: one request_bodies row. */
  bodies?: StoredBodies | null;
};

const HOUR_MS = 3_600_000;

/** One spend_rollup row of a batch: its requests summed per hour × key × user × team × provider × model. */
interface RollupRow {
  hour: Date;
  apiKeyId: string | null;
  userId: string | null;
  teamId: string | null;
  providerId: string;
  model: string | null;
  requests: number;
  promptTokens: bigint;
  completionTokens: bigint;
  costMicroUsd: bigint;
}

/** A count as a bigint; anything that is not a finite number counts 0 (never a throw in the writer). */
function count(n: number): bigint {
  return Number.isFinite(n) ? BigInt(Math.trunc(n)) : 0n;
}

/** Pre-aggregates a batch's rows that reached a provider (one upsert row per bucket; docs/spend.md). */
export function rollupOf(rows: readonly RequestLogEntry[]): RollupRow[] {
  const out = new Map<string, RollupRow>();
  for (const r of rows) {
    if (!r.providerId) continue;
    const hour = Math.floor(r.createdAt.getTime() / HOUR_MS) * HOUR_MS;
    const model = r.servedModel ?? r.model;
    const teamId = r.teamId ?? null;
    const key = `${hour}|${r.apiKeyId}|${r.userId}|${teamId}|${r.providerId}|${model === null ? '\0null' : model}`;
    let b = out.get(key);
    if (!b) {
      b = {
        hour: new Date(hour),
        apiKeyId: r.apiKeyId,
        userId: r.userId,
        teamId,
        providerId: r.providerId,
        model,
        requests: 0,
        promptTokens: 0n,
        completionTokens: 0n,
        costMicroUsd: 0n,
      };
      out.set(key, b);
    }
    b.requests++;
    b.promptTokens += count(r.promptTokens);
    b.completionTokens += count(r.completionTokens);
    b.costMicroUsd += count(r.costMicroUsd ?? 0);
  }
  return [...out.values()];
}

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
   * One transaction per batch of two statements, one array parameter per column (unnest): the rows,
   * and the batch's spend pre-aggregated into one INSERT … ON CONFLICT DO UPDATE of spend_rollup.
   * Both commit or neither, so a batch that fails (and is retried, or split to isolate a refused row)
   * never counts its spend twice or without its rows. Building a TypeORM insert of 500 entities costs
   * tens of ms of CPU on the event loop; this costs next to nothing.
   */
  private async insert(rows: RequestLogEntry[]): Promise<void> {
    const col = <K extends keyof RequestLogEntry>(k: K) => rows.map((r) => r[k]);
    const rollup = rollupOf(rows);
    // Row ids made here, so a captured row's request_bodies row names it in the same transaction.
    const ids = rows.map(() => randomUUID());
    await this.rows.manager.transaction(async (m) => {
      await m.query(
        `INSERT INTO request_log (created_at, request_id, api_key_id, user_id, provider_id, provider_key_id, endpoint, model,
         priority, status, error_code, prompt_tokens, completion_tokens, queue_ms, upstream_ms, overhead_ms, attempts, stream,
         route_id, attempt_log, cost_micro_usd, id, team_id, served_model)
       SELECT * FROM unnest($1::timestamptz[], $2::varchar[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::varchar[],
         $8::varchar[], $9::varchar[], $10::int[], $11::varchar[], $12::int[], $13::int[], $14::int[], $15::int[], $16::int[],
         $17::smallint[], $18::boolean[], $19::uuid[], $20::jsonb[], $21::bigint[], $22::uuid[], $23::uuid[], $24::varchar[])`,
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
          rows.map((r) =>
            r.costMicroUsd === null || r.costMicroUsd === undefined ? null : String(r.costMicroUsd),
          ),
          ids,
          rows.map((r) => r.teamId ?? null),
          rows.map((r) => r.servedModel ?? null),
        ],
      );
      await insertBodies(m, rows, ids);
      if (rollup.length === 0) return;
      await m.query(
        `INSERT INTO spend_rollup AS s (hour, api_key_id, user_id, team_id, provider_id, model, requests, prompt_tokens,
           completion_tokens, cost_micro_usd)
         SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::varchar[], $7::bigint[],
           $8::bigint[], $9::bigint[], $10::bigint[])
         ON CONFLICT (hour, api_key_id, user_id, team_id, provider_id, model) DO UPDATE SET
           requests = s.requests + EXCLUDED.requests,
           prompt_tokens = s.prompt_tokens + EXCLUDED.prompt_tokens,
           completion_tokens = s.completion_tokens + EXCLUDED.completion_tokens,
           cost_micro_usd = s.cost_micro_usd + EXCLUDED.cost_micro_usd`,
        [
          rollup.map((b) => b.hour),
          rollup.map((b) => b.apiKeyId),
          rollup.map((b) => b.userId),
          rollup.map((b) => b.teamId),
          rollup.map((b) => b.providerId),
          rollup.map((b) => b.model),
          rollup.map((b) => b.requests),
          rollup.map((b) => String(b.promptTokens)),
          rollup.map((b) => String(b.completionTokens)),
          rollup.map((b) => String(b.costMicroUsd)),
        ],
      );
    });
  }

  /** Before shutdown hooks: the database pool closes in onApplicationShutdown. */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.batch.close();
  }
}

/** The batch's captured bodies (docs/requests.md): one request_bodies row per captured request. */
async function insertBodies(
  m: { query(sql: string, params: unknown[]): Promise<unknown> },
  rows: readonly RequestLogEntry[],
  ids: readonly string[],
): Promise<void> {
  const at: number[] = [];
  for (let i = 0; i < rows.length; i++) if (rows[i]!.bodies) at.push(i);
  if (at.length === 0) return;
  await m.query(
    `INSERT INTO request_bodies (request_id, request_body, response_body, truncated, created_at)
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::boolean[], $5::timestamptz[])`,
    [
      at.map((i) => ids[i]),
      at.map((i) => storableText(rows[i]!.bodies!.requestBody)),
      at.map((i) => storableText(rows[i]!.bodies!.responseBody)),
      at.map((i) => rows[i]!.bodies!.truncated),
      at.map((i) => rows[i]!.createdAt),
    ],
  );
}

/** Every text column within what Postgres stores (lengths from RequestLogRow). */
function storable(e: RequestLogEntry): RequestLogEntry {
  return {
    ...e,
    requestId: storableText(e.requestId, 128),
    endpoint: storableText(e.endpoint, 32),
    model: storableText(e.model, 255),
    servedModel: e.servedModel === undefined ? undefined : storableText(e.servedModel, 255),
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
