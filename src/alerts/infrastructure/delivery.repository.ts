import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

/** One attempt as kept in `webhook_deliveries.attempt_log` (snake_case, like the API). */
export interface AttemptEntry {
  attempt: number;
  at: string;
  http_status: number | null;
  error: string | null;
  duration_ms: number;
}

/** A due delivery claimed by this instance, with what sending it needs. */
export interface ClaimedDelivery {
  id: string;
  webhookId: string;
  eventId: string;
  eventType: string;
  body: string;
  attempts: number;
  url: string;
  secretCiphertext: string;
  encryptionKeyId: string;
}

export interface DeliveryRow {
  id: string;
  webhook_id: string;
  event_id: string;
  event_type: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  attempt_log: AttemptEntry[];
  next_attempt_at: Date;
  last_http_status: number | null;
  last_error: string | null;
  last_duration_ms: number | null;
  created_at: Date;
  completed_at: Date | null;
  /** The row's position for cursors: created_at in µs since epoch (text) and id. */
  created_us: string;
}

export interface AttemptResult {
  status: 'pending' | 'delivered' | 'failed';
  /** For `pending`: the wait before the next attempt (from the database's clock). */
  retryInMs: number;
  entry: AttemptEntry;
}

/**
 * SQL for `webhook_deliveries`. Enqueueing is one INSERT … SELECT per batch of events (a row per
 * subscribed, enabled webhook). Sending is claim → send → finish: `claimDue` takes due rows that
 * nobody holds (`FOR UPDATE SKIP LOCKED`, then `claimed_until` in the future and a fresh
 * `claim_token`), so instances sharing the database never send one delivery at once; `finish`
 * writes the attempt only while the claim is still this one's.
 */
@Injectable()
export class DeliveryRepository {
  constructor(private readonly dataSource: DataSource) {}

  /**
   * One row per (event, subscribed enabled webhook); returns how many were created. created_at is the
   * transaction's time plus the event's position in µs, so events emitted in one millisecond keep
   * their order in the newest-first listing (clock_timestamp() repeats itself on PGlite).
   */
  async enqueue(events: { id: string; type: string; body: string }[]): Promise<number> {
    if (events.length === 0) return 0;
    const rows = (await this.dataSource.query(
      `INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, body, created_at, next_attempt_at)
       SELECT w.id, e.id, e.type, e.body, now() + e.n * interval '1 microsecond', now()
         FROM unnest($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY AS e(id, type, body, n)
         JOIN webhooks w
           ON w.enabled AND (w.events @> jsonb_build_array(e.type) OR w.events @> '["*"]'::jsonb)
        ORDER BY e.n, w.created_at
       RETURNING id`,
      [events.map((e) => e.id), events.map((e) => e.type), events.map((e) => e.body)],
    )) as { id: string }[];
    return rows.length;
  }

  /** Claims up to `limit` due deliveries for `claimMs` under `token`. */
  async claimDue(limit: number, claimMs: number, token: string): Promise<ClaimedDelivery[]> {
    const rows = (await this.dataSource.query(
      `UPDATE webhook_deliveries d
          SET claimed_until = now() + make_interval(secs => $2::double precision / 1000), claim_token = $3
         FROM webhooks w
        WHERE d.id IN (
                SELECT id FROM webhook_deliveries
                 WHERE status = 'pending' AND next_attempt_at <= now()
                   AND (claimed_until IS NULL OR claimed_until < now())
                 ORDER BY next_attempt_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
          AND (d.claimed_until IS NULL OR d.claimed_until < now())
          AND w.id = d.webhook_id
       RETURNING d.id, d.webhook_id, d.event_id, d.event_type, d.body, d.attempts,
                 w.url, w.secret_ciphertext, w.encryption_key_id`,
      [limit, claimMs, token],
    )) as Record<string, unknown>[];
    // pg returns [rows, count] for UPDATE … RETURNING through TypeORM
    const list = (Array.isArray(rows[0]) ? rows[0] : rows) as Record<string, unknown>[];
    return list.map((r) => ({
      id: String(r.id),
      webhookId: String(r.webhook_id),
      eventId: String(r.event_id),
      eventType: String(r.event_type),
      body: String(r.body),
      attempts: Number(r.attempts),
      url: String(r.url),
      secretCiphertext: String(r.secret_ciphertext),
      encryptionKeyId: String(r.encryption_key_id),
    }));
  }

  /** Records an attempt and releases the claim; false when the claim was lost (another instance took over). */
  async finish(id: string, token: string, result: AttemptResult): Promise<boolean> {
    const rows = (await this.dataSource.query(
      `UPDATE webhook_deliveries
          SET status = $3::varchar,
              attempts = $4,
              attempt_log = attempt_log || $5::jsonb,
              next_attempt_at = CASE WHEN $3::varchar = 'pending'
                                     THEN now() + make_interval(secs => $6::double precision / 1000)
                                     ELSE next_attempt_at END,
              completed_at = CASE WHEN $3::varchar = 'pending' THEN NULL ELSE now() END,
              last_http_status = $7,
              last_error = $8,
              last_duration_ms = $9,
              claimed_until = NULL,
              claim_token = NULL
        WHERE id = $1 AND claim_token = $2
       RETURNING id`,
      [
        id,
        token,
        result.status,
        result.entry.attempt,
        JSON.stringify([result.entry]),
        result.retryInMs,
        result.entry.http_status,
        result.entry.error,
        result.entry.duration_ms,
      ],
    )) as unknown[];
    const list = Array.isArray(rows[0]) ? (rows[0] as unknown[]) : rows;
    return list.length > 0;
  }

  /** Gives claims back (shutdown): the rows are due again at once for any instance. */
  async release(ids: string[], token: string): Promise<void> {
    if (ids.length === 0) return;
    await this.dataSource.query(
      `UPDATE webhook_deliveries SET claimed_until = NULL, claim_token = NULL
        WHERE id = ANY($1::uuid[]) AND claim_token = $2`,
      [ids, token],
    );
  }

  /** A webhook's deliveries, newest first; `before` is a row position from a previous page. */
  async ofWebhook(
    webhookId: string,
    limit: number,
    before: { createdUs: string; id: string } | null,
  ): Promise<DeliveryRow[]> {
    const params: unknown[] = [webhookId, limit];
    let where = 'webhook_id = $1';
    if (before) {
      params.push(before.createdUs, before.id);
      where += ` AND ((extract(epoch FROM created_at) * 1000000)::bigint, id) < ($3::bigint, $4::uuid)`;
    }
    return (await this.dataSource.query(
      `SELECT id, webhook_id, event_id, event_type, status, attempts, attempt_log, next_attempt_at,
              last_http_status, last_error, last_duration_ms, created_at, completed_at,
              ((extract(epoch FROM created_at) * 1000000)::bigint)::text AS created_us
         FROM webhook_deliveries
        WHERE ${where}
        ORDER BY created_at DESC, id DESC
        LIMIT $2`,
      params,
    )) as DeliveryRow[];
  }
}
