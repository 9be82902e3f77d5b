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
 * Rows per statement. A write starts at FLUSH_AT_ROWS, and the rows that arrive while it runs go in
 * the next one, so a statement often carries more than FLUSH_AT_ROWS: in one statement up to this
 * many (parsing and planning it costs ~2 ms of embedded Postgres CPU and ~1 ms of the event loop,
 * whatever its size), still short enough not to hold embedded mode's one connection for long.
 */
const CHUNK_ROWS = 1000;

/**
 * The relay's request log, written in batches: rows collect in memory and go to Postgres in one
 * statement every second (or once 500 rows wait), and on shutdown. Text columns (and the strings
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
      chunkSize: CHUNK_ROWS,
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
   * One statement per batch: the rows, their captured bodies and the batch's spend pre-aggregated
   * into spend_rollup (INSERT … ON CONFLICT DO UPDATE), as data-modifying CTEs of one INSERT. A
   * statement commits whole or not at all, so a batch that fails (and is retried, or split to
   * isolate a refused row) never counts its spend twice or without its rows; and one statement is
   * one round trip, where a transaction of three was five (embedded Postgres runs on the gateway's
   * own CPU: each statement is parsed, planned and executed there). One array parameter per column
   * (unnest), each sent as an array literal built here (pg's generic array encoding costs more per
   * element). Building a TypeORM insert of 500 entities costs tens of ms of CPU on the event loop;
   * this costs next to nothing.
   */
  private async insert(rows: RequestLogEntry[]): Promise<void> {
    const rollup = rollupOf(rows);
    // Row ids made here, so a captured row's request_bodies row names it in the same statement.
    const ids = rows.map(() => randomUUID());
    const captured: number[] = [];
    for (let i = 0; i < rows.length; i++) if (rows[i]!.bodies) captured.push(i);
    await this.rows.manager.query(INSERT_BATCH, [
      dateArray(rows.map((r) => r.createdAt)),
      textArray(rows.map((r) => r.requestId)),
      textArray(rows.map((r) => r.apiKeyId)),
      textArray(rows.map((r) => r.userId)),
      textArray(rows.map((r) => r.providerId)),
      textArray(rows.map((r) => r.providerKeyId)),
      textArray(rows.map((r) => r.endpoint)),
      textArray(rows.map((r) => r.model)),
      textArray(rows.map((r) => r.priority)),
      numberArray(rows.map((r) => r.status)),
      textArray(rows.map((r) => r.errorCode)),
      numberArray(rows.map((r) => r.promptTokens)),
      numberArray(rows.map((r) => r.completionTokens)),
      numberArray(rows.map((r) => r.queueMs)),
      numberArray(rows.map((r) => r.upstreamMs)),
      numberArray(rows.map((r) => r.overheadMs)),
      numberArray(rows.map((r) => r.attempts)),
      boolArray(rows.map((r) => r.stream)),
      textArray(rows.map((r) => r.routeId ?? null)),
      // JSON text per row; jsonb parses it (strings were made storable in `add`)
      textArray(rows.map((r) => (r.attemptLog ? JSON.stringify(r.attemptLog) : null))),
      numberArray(rows.map((r) => r.costMicroUsd ?? null)),
      textArray(ids),
      textArray(rows.map((r) => r.teamId ?? null)),
      textArray(rows.map((r) => r.servedModel ?? null)),
      // the captured bodies: one request_bodies row per captured request (docs/requests.md)
      textArray(captured.map((i) => ids[i]!)),
      textArray(captured.map((i) => storableText(rows[i]!.bodies!.requestBody))),
      textArray(captured.map((i) => storableText(rows[i]!.bodies!.responseBody))),
      boolArray(captured.map((i) => rows[i]!.bodies!.truncated)),
      dateArray(captured.map((i) => rows[i]!.createdAt)),
      // the spend rollup
      dateArray(rollup.map((b) => b.hour)),
      textArray(rollup.map((b) => b.apiKeyId)),
      textArray(rollup.map((b) => b.userId)),
      textArray(rollup.map((b) => b.teamId)),
      textArray(rollup.map((b) => b.providerId)),
      textArray(rollup.map((b) => b.model)),
      numberArray(rollup.map((b) => b.requests)),
      numberArray(rollup.map((b) => b.promptTokens)),
      numberArray(rollup.map((b) => b.completionTokens)),
      numberArray(rollup.map((b) => b.costMicroUsd)),
    ]);
  }

  /** Before shutdown hooks: the database pool closes in onApplicationShutdown. */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.batch.close();
  }
}

/**
 * The batch as one statement (see RequestLogWriter.insert): $1–$24 the request_log columns, $25–$29
 * the captured bodies, $30–$39 the spend rollup; an empty array writes nothing to its table.
 */
const INSERT_BATCH = `WITH log AS (
  INSERT INTO request_log (created_at, request_id, api_key_id, user_id, provider_id, provider_key_id, endpoint, model,
    priority, status, error_code, prompt_tokens, completion_tokens, queue_ms, upstream_ms, overhead_ms, attempts, stream,
    route_id, attempt_log, cost_micro_usd, id, team_id, served_model)
  SELECT * FROM unnest($1::timestamptz[], $2::varchar[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::varchar[],
    $8::varchar[], $9::varchar[], $10::int[], $11::varchar[], $12::int[], $13::int[], $14::int[], $15::int[], $16::int[],
    $17::smallint[], $18::boolean[], $19::uuid[], $20::jsonb[], $21::bigint[], $22::uuid[], $23::uuid[], $24::varchar[])
), bodies AS (
  INSERT INTO request_bodies (request_id, request_body, response_body, truncated, created_at)
  SELECT * FROM unnest($25::uuid[], $26::text[], $27::text[], $28::boolean[], $29::timestamptz[])
)
INSERT INTO spend_rollup AS s (hour, api_key_id, user_id, team_id, provider_id, model, requests, prompt_tokens,
  completion_tokens, cost_micro_usd)
SELECT * FROM unnest($30::timestamptz[], $31::uuid[], $32::uuid[], $33::uuid[], $34::uuid[], $35::varchar[], $36::bigint[],
  $37::bigint[], $38::bigint[], $39::bigint[])
ON CONFLICT (hour, api_key_id, user_id, team_id, provider_id, model) DO UPDATE SET
  requests = s.requests + EXCLUDED.requests,
  prompt_tokens = s.prompt_tokens + EXCLUDED.prompt_tokens,
  completion_tokens = s.completion_tokens + EXCLUDED.completion_tokens,
  cost_micro_usd = s.cost_micro_usd + EXCLUDED.cost_micro_usd`;

/**
 * Postgres array literals (`{"a",NULL,"b"}`), the parameter format of an `unnest($n::type[])`: every
 * string element double-quoted with `"` and `\` escaped (so commas, braces, spaces, the word NULL
 * stay data); null is NULL. Strings made storable first (no NUL).
 */
export function textArray(values: readonly (string | null | undefined)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    else out += `"${NEEDS_ESCAPE.test(v) ? v.replace(ESCAPED, '\\$&') : v}"`;
  }
  return `${out}}`;
}
const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;

/** Numbers and bigints as their decimal text (a non-finite number reaches Postgres as its text, which it refuses, as before). */
export function numberArray(values: readonly (number | bigint | null | undefined)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    out += v === null || v === undefined ? 'NULL' : `"${String(v)}"`;
  }
  return `${out}}`;
}

export function boolArray(values: readonly (boolean | null | undefined)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    out += v === null || v === undefined ? 'NULL' : v ? 't' : 'f';
  }
  return `${out}}`;
}

/** Instants in UTC ISO 8601 (millisecond precision, what a Date holds); an invalid Date is refused by Postgres. */
export function dateArray(values: readonly Date[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ',';
    const t = values[i]!.getTime();
    out += Number.isNaN(t) ? '"NaN"' : `"${values[i]!.toISOString()}"`;
  }
  return `${out}}`;
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
