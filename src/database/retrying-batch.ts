import type { Logger } from '@nestjs/common';
import { isConnectivityError } from '../common/error-response.js';
import type { FloodgateMetrics } from '../metrics/floodgate-metrics.js';

/**
 * What a failed batch write means:
 * - `unreachable`: Postgres could not be reached (connection refused/reset/terminated…) — keep the
 *   batch and retry it;
 * - `rejected`: Postgres refused the data itself (SQLSTATE class 22 data exception, 23 integrity
 *   constraint, 54 program limit) — one entry of the batch is bad: isolate it;
 * - `failed`: anything else (a lock timeout, an admin shutdown, a bug) — keep the batch and retry it,
 *   like an outage, so nothing is given up on a cause that may pass.
 */
export type StoreFailure = 'unreachable' | 'rejected' | 'failed';

const REJECTED_CLASSES = new Set(['22', '23', '54']);

export function classifyStoreFailure(err: unknown): StoreFailure {
  if (isConnectivityError(err)) return 'unreachable';
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code))
      return REJECTED_CLASSES.has(code.slice(0, 2)) ? 'rejected' : 'failed';
    e = (e as { driverError?: unknown }).driverError ?? (e as { cause?: unknown }).cause;
  }
  return 'failed';
}

export interface RetryingBatchOptions<V> {
  /** Metric label and log name: request_log, key_usage, api_key_usage. */
  name: string;
  /** What one entry is, for log lines ("rows", "usage entries"). */
  unit: string;
  /** Writes some entries in ONE statement (all or nothing). */
  write: (entries: [string, V][]) => Promise<void>;
  /** Entries per statement. */
  chunkSize: number;
  /** In-memory bound (WRITE_BUFFER_MAX_ENTRIES): past it, new entries are dropped and counted. */
  maxEntries: number;
  /** Two entries with the same key become one (deltas add up); absent: a later add replaces. */
  merge?: (older: V, newer: V) => V;
  logger: Logger;
  metrics?: FloodgateMetrics;
  /** First retry delay after a failed write; doubles per failure up to maxRetryMs. */
  minRetryMs?: number;
  maxRetryMs?: number;
  /** Describes an entry dropped as rejected, for its log line (never secrets). */
  describe?: (key: string, value: V) => string;
}

export const DEFAULT_MIN_RETRY_MS = 500;
export const DEFAULT_MAX_RETRY_MS = 5_000;
/** How long `close` keeps retrying what is still buffered at shutdown. */
export const SHUTDOWN_FLUSH_BUDGET_MS = 5_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * The one mechanism behind every batched Postgres writer: entries collect in memory (merged by key),
 * go out in chunks of one statement each, and survive an outage of the store.
 *
 * - Store unreachable (or any failure that is not about the data): the batch goes back into the
 *   buffer and is retried with exponential backoff (minRetryMs doubling to maxRetryMs); nothing is
 *   dropped until the buffer holds `maxEntries`, then new entries are dropped — one log line when
 *   that starts, one with the count when it ends, `floodgate_store_writes_dropped_total{reason=
 *   "buffer_full"}` per entry.
 * - Data refused (SQLSTATE 22/23/54): the chunk is split in halves until the refused entry is alone;
 *   only that entry is dropped (log line + `reason="rejected"`), everything else is written.
 * - Shutdown (`close`): a last flush, retried for up to SHUTDOWN_FLUSH_BUDGET_MS; what is still
 *   unwritten then is logged and counted (`reason="shutdown"`).
 *
 * Writes are at-least-once: a statement whose commit succeeded but whose answer was lost with the
 * connection is written again on retry (a window of one round trip).
 */
export class RetryingBatch<V> {
  private entries = new Map<string, V>();
  private chain: Promise<void> = Promise.resolve();
  private running = false;
  private failures = 0;
  private nextAttemptAt = 0;
  private fullSince: number | null = null;
  private droppedWhileFull = 0;
  private readonly minRetryMs: number;
  private readonly maxRetryMs: number;
  /** Entries written since the start. */
  written = 0;
  /** Entries given up on since the start, by reason. */
  readonly dropped = { buffer_full: 0, rejected: 0, shutdown: 0 };

  constructor(private readonly options: RetryingBatchOptions<V>) {
    this.minRetryMs = options.minRetryMs ?? DEFAULT_MIN_RETRY_MS;
    this.maxRetryMs = options.maxRetryMs ?? DEFAULT_MAX_RETRY_MS;
  }

  get size(): number {
    return this.entries.size;
  }

  /** true while the last write failed (the store is unreachable or refusing) */
  get failing(): boolean {
    return this.failures > 0;
  }

  /** Adds (or merges) an entry. false when the buffer is full and the entry was dropped. */
  add(key: string, value: V): boolean {
    const existing = this.entries.get(key);
    if (existing !== undefined) {
      this.entries.set(key, this.options.merge ? this.options.merge(existing, value) : value);
      return true;
    }
    if (this.entries.size >= this.options.maxEntries) {
      this.dropFull(1);
      return false;
    }
    this.entries.set(key, value);
    return true;
  }

  /** The periodic flush: skipped while a flush runs or while backing off after a failure. */
  tick(): void {
    if (this.running || this.entries.size === 0 || Date.now() < this.nextAttemptAt) return;
    void this.flush();
  }

  /** Writes everything buffered now (serialised with any running flush); never throws. */
  flush(): Promise<void> {
    const next = this.chain
      .then(() => this.flushOnce())
      .catch((err: unknown) => this.options.logger.error({ err }, `flushing ${this.options.name} failed`));
    this.chain = next;
    return next;
  }

  /** Shutdown: flushes, retrying for up to `budgetMs`; then counts and logs what is lost. */
  async close(budgetMs = SHUTDOWN_FLUSH_BUDGET_MS): Promise<void> {
    const deadline = Date.now() + budgetMs;
    await this.flush();
    while (this.entries.size > 0 && Date.now() < deadline) {
      await sleep(Math.min(Math.max(50, this.nextAttemptAt - Date.now()), deadline - Date.now()));
      await this.flush();
    }
    const lost = this.entries.size;
    if (lost > 0) {
      this.entries = new Map();
      this.dropped.shutdown += lost;
      this.options.metrics?.storeWritesDropped.labels(this.options.name, 'shutdown').inc(lost);
      this.options.logger.error(
        `${lost} ${this.options.unit} could not be written to Postgres before shutdown and are lost`,
      );
    }
    this.gauge();
  }

  private async flushOnce(): Promise<void> {
    if (this.entries.size === 0) return;
    this.running = true;
    const batch = [...this.entries];
    this.entries = new Map();
    try {
      const { chunkSize } = this.options;
      for (let i = 0; i < batch.length; i += chunkSize) {
        const left = await this.writeIsolating(batch.slice(i, i + chunkSize));
        if (left) {
          this.putBack(left.entries.concat(batch.slice(i + chunkSize)));
          this.failed(left.err, left.kind);
          return;
        }
      }
      this.succeeded(batch.length);
    } finally {
      this.running = false;
      this.gauge();
    }
  }

  /** Writes a chunk, isolating refused entries; returns what could not be written for another reason. */
  private async writeIsolating(
    chunk: [string, V][],
  ): Promise<{ entries: [string, V][]; err: unknown; kind: StoreFailure } | null> {
    try {
      await this.options.write(chunk);
      this.written += chunk.length;
      return null;
    } catch (err) {
      const kind = classifyStoreFailure(err);
      if (kind !== 'rejected') return { entries: chunk, err, kind };
      if (chunk.length === 1) {
        const [key, value] = chunk[0]!;
        this.dropped.rejected++;
        this.options.metrics?.storeWritesDropped.labels(this.options.name, 'rejected').inc();
        this.options.logger.error(
          `Postgres refused one of the ${this.options.unit} (${messageOf(err)}); it is dropped, the others are written: ${
            this.options.describe?.(key, value) ?? key
          }`,
        );
        return null;
      }
      const half = Math.ceil(chunk.length / 2);
      const first = await this.writeIsolating(chunk.slice(0, half));
      if (first) return { ...first, entries: first.entries.concat(chunk.slice(half)) };
      return this.writeIsolating(chunk.slice(half));
    }
  }

  /** A failed batch goes back in front of what arrived meanwhile (merged by key), up to the bound. */
  private putBack(failed: [string, V][]): void {
    const newer = this.entries;
    const merged = new Map<string, V>();
    let overflow = 0;
    for (const [k, v] of failed) {
      if (merged.size >= this.options.maxEntries) overflow++;
      else merged.set(k, v);
    }
    for (const [k, v] of newer) {
      const older = merged.get(k);
      if (older !== undefined) merged.set(k, this.options.merge ? this.options.merge(older, v) : v);
      else if (merged.size >= this.options.maxEntries) overflow++;
      else merged.set(k, v);
    }
    this.entries = merged;
    if (overflow > 0) this.dropFull(overflow);
  }

  private failed(err: unknown, kind: StoreFailure): void {
    this.failures++;
    const delay = Math.min(this.maxRetryMs, this.minRetryMs * 2 ** Math.min(this.failures - 1, 20));
    this.nextAttemptAt = Date.now() + delay * (0.8 + Math.random() * 0.4);
    // one line when the trouble starts, then one every ~10 failures: an outage is not a log flood
    if (this.failures === 1 || this.failures % 10 === 0) {
      this.options.logger.warn(
        `writing ${this.options.name} to Postgres failed (${kind === 'unreachable' ? 'Postgres unreachable' : 'error'}: ${messageOf(err)}); ` +
          `${this.entries.size} ${this.options.unit} kept in memory (bound ${this.options.maxEntries}), retrying with backoff (failure ${this.failures})`,
      );
    }
  }

  private succeeded(count: number): void {
    if (this.failures > 0) {
      this.options.logger.log(
        `writing ${this.options.name} to Postgres works again after ${this.failures} failed attempt(s): ${count} ${this.options.unit} kept meanwhile are written`,
      );
    }
    this.failures = 0;
    this.nextAttemptAt = 0;
    if (this.fullSince !== null && this.entries.size < this.options.maxEntries) {
      this.options.logger.warn(
        `the ${this.options.name} buffer has room again: ${this.droppedWhileFull} ${this.options.unit} were dropped while it was full (${Math.round((Date.now() - this.fullSince) / 1000)} s)`,
      );
      this.fullSince = null;
      this.droppedWhileFull = 0;
    }
  }

  private dropFull(n: number): void {
    this.dropped.buffer_full += n;
    this.droppedWhileFull += n;
    this.options.metrics?.storeWritesDropped.labels(this.options.name, 'buffer_full').inc(n);
    if (this.fullSince === null) {
      this.fullSince = Date.now();
      this.options.logger.error(
        `the ${this.options.name} buffer is full (${this.options.maxEntries} ${this.options.unit}, WRITE_BUFFER_MAX_ENTRIES) while Postgres cannot be written: new ${this.options.unit} are dropped until it drains`,
      );
    }
  }

  private gauge(): void {
    this.options.metrics?.storeWriteBuffer.labels(this.options.name).set(this.entries.size);
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
