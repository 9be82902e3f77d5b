import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { RequestQuery } from '../domain/request-query.js';
import type { RequestBodiesRecord, RequestLogRecord } from '../domain/request-log.read-model.js';

const COLUMNS = `r.id, to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at_us,
  r.request_id, r.endpoint, r.model, r.served_model, r.status, r.error_code, r.priority, r.stream, r.prompt_tokens,
  r.completion_tokens, r.cost_micro_usd::text AS cost_micro_usd, r.queue_ms, r.upstream_ms, r.overhead_ms, r.attempts,
  r.provider_id, p.name AS provider_name, r.provider_key_id, r.api_key_id, r.user_id, r.team_id, r.route_id`;

/**
 * Read-only SQL over `request_log` (written in batches by the relay) and `request_bodies`, plus the
 * retention delete of old bodies. Pages are keyset pages on (created_at, id), newest first: a row
 * inserted while a client pages never shifts the rows of later pages.
 */
@Injectable()
export class RequestsRepository {
  constructor(private readonly dataSource: DataSource) {}

  /** Up to `limit + 1` rows (the extra one says whether there is a next page). */
  async page(query: RequestQuery): Promise<RequestLogRecord[]> {
    const params: unknown[] = [];
    const where: string[] = [];
    const add = (sql: (n: string) => string, value: unknown) => {
      params.push(value);
      where.push(sql(`$${params.length}`));
    };
    if (query.keyId) add((n) => `r.api_key_id = ${n}`, query.keyId);
    if (query.userId) add((n) => `r.user_id = ${n}`, query.userId);
    if (query.teamId) add((n) => `r.team_id = ${n}`, query.teamId);
    if (query.providerId) add((n) => `r.provider_id = ${n}`, query.providerId);
    if (query.model !== null) add((n) => `r.model = ${n}`, query.model);
    if (query.endpoint !== null) add((n) => `r.endpoint = ${n}`, query.endpoint);
    if (query.status) {
      if (query.status.min === query.status.max) add((n) => `r.status = ${n}`, query.status.min);
      else {
        add((n) => `r.status >= ${n}`, query.status.min);
        add((n) => `r.status <= ${n}`, query.status.max);
      }
      // The status index holds only rows whose status is not 200 (migration RequestLogPartialIndexes):
      // said in so many words, so the planner may use it whatever the parameters' values.
      if (query.status.min > 200 || query.status.max < 200) where.push('r.status <> 200');
    }
    if (query.from) add((n) => `r.created_at >= ${n}`, query.from);
    if (query.to) add((n) => `r.created_at < ${n}`, query.to);
    if (query.cursor) {
      params.push(query.cursor.createdAt, query.cursor.id);
      where.push(`(r.created_at, r.id) < ($${params.length - 1}::timestamptz, $${params.length}::uuid)`);
    }
    params.push(query.limit + 1);
    return (await this.dataSource.query(
      `SELECT ${COLUMNS}
         FROM request_log r LEFT JOIN providers p ON p.id = r.provider_id
        ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY r.created_at DESC, r.id DESC
        LIMIT $${params.length}`,
      params,
    )) as RequestLogRecord[];
  }

  async one(id: string): Promise<{ row: RequestLogRecord; bodies: RequestBodiesRecord | null } | null> {
    const rows = (await this.dataSource.query(
      `SELECT ${COLUMNS}, r.attempt_log
         FROM request_log r LEFT JOIN providers p ON p.id = r.provider_id
        WHERE r.id = $1`,
      [id],
    )) as RequestLogRecord[];
    const row = rows[0];
    if (!row) return null;
    const bodies = (await this.dataSource.query(
      'SELECT request_body, response_body, truncated FROM request_bodies WHERE request_id = $1',
      [id],
    )) as RequestBodiesRecord[];
    return { row, bodies: bodies[0] ?? null };
  }

  /** Provider names by id (the attempts of a routed request may name several providers). */
  async providerNames(ids: string[]): Promise<Map<string, string>> {
    if (ids.length === 0) return new Map();
    const rows = (await this.dataSource.query('SELECT id, name FROM providers WHERE id = ANY($1::uuid[])', [
      ids,
    ])) as { id: string; name: string }[];
    return new Map(rows.map((r) => [r.id, r.name]));
  }

  /**
   * Deletes up to `chunk` captured bodies older than `before` (SKIP LOCKED: instances running the
   * job at once delete disjoint rows, never wait on each other). Returns how many it deleted.
   */
  async deleteBodiesBefore(before: Date, chunk: number): Promise<number> {
    const rows = (await this.dataSource.query(
      `WITH doomed AS (
         SELECT request_id FROM request_bodies WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED
       ), gone AS (
         DELETE FROM request_bodies b USING doomed WHERE b.request_id = doomed.request_id RETURNING 1
       )
       SELECT count(*)::int AS n FROM gone`,
      [before, chunk],
    )) as { n: number }[];
    return Number(rows[0]?.n ?? 0);
  }
}
