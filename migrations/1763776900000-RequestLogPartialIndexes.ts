import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Two of the request browser's filter indexes become partial (docs/performance.md, "Issue 14:
 * embedded CPU per request"): every row the relay logs updated every index, and in embedded mode
 * that is Postgres on the gateway's own CPU (~3.5 µs per index per row).
 * - `(status, created_at) WHERE status <> 200`: the rows worth finding by status are the others;
 *   `status=200` (and `2xx`) pages walk the (created_at, id) index newest first and stop after a
 *   page of matches, which takes about limit ÷ (share of 200s) rows.
 * - `(team_id, created_at) WHERE team_id IS NOT NULL`: `team_id = $1` never matches a NULL, so
 *   requests without a team need no entry.
 */
export class RequestLogPartialIndexes1763776900000 implements MigrationInterface {
  name = 'RequestLogPartialIndexes1763776900000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX IF EXISTS "IDX_request_log_status_created_at"`);
    await q.query(
      `CREATE INDEX "IDX_request_log_status_created_at" ON "request_log" ("status", "created_at") WHERE "status" <> 200`,
    );
    await q.query(`DROP INDEX IF EXISTS "IDX_request_log_team_id_created_at"`);
    await q.query(
      `CREATE INDEX "IDX_request_log_team_id_created_at" ON "request_log" ("team_id", "created_at") WHERE "team_id" IS NOT NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX "IDX_request_log_team_id_created_at"`);
    await q.query(
      `CREATE INDEX "IDX_request_log_team_id_created_at" ON "request_log" ("team_id", "created_at")`,
    );
    await q.query(`DROP INDEX "IDX_request_log_status_created_at"`);
    await q.query(
      `CREATE INDEX "IDX_request_log_status_created_at" ON "request_log" ("status", "created_at")`,
    );
  }
}
