import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The requests API (issue 17 item 5, docs/requests.md): request_log gains the team the request was
 * charged to and the model the provider served (the spend rollup already keys on both), and the
 * indexes its filters need — each filter column with created_at, and (created_at, id) for the
 * newest-first keyset pages. Optional body capture: `capture_bodies` on API keys and routes (off by
 * default), and `request_bodies` (one row per captured request, written in the request-log batch).
 */
export class RequestsApi1763776800000 implements MigrationInterface {
  name = 'RequestsApi1763776800000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "request_log" ADD "team_id" uuid`);
    await q.query(`ALTER TABLE "request_log" ADD "served_model" varchar(255)`);
    // (created_at, id) replaces (created_at): the keyset order, and still every time-range scan.
    await q.query(`DROP INDEX IF EXISTS "IDX_request_log_created_at"`);
    await q.query(`CREATE INDEX "IDX_request_log_created_at_id" ON "request_log" ("created_at", "id")`);
    for (const column of ['user_id', 'team_id', 'model', 'status']) {
      await q.query(
        `CREATE INDEX "IDX_request_log_${column}_created_at" ON "request_log" ("${column}", "created_at")`,
      );
    }
    await q.query(`ALTER TABLE "api_keys" ADD "capture_bodies" boolean NOT NULL DEFAULT false`);
    await q.query(`ALTER TABLE "routes" ADD "capture_bodies" boolean NOT NULL DEFAULT false`);
    await q.query(`
      CREATE TABLE "request_bodies" (
        "request_id" uuid PRIMARY KEY,
        "request_body" text,
        "response_body" text,
        "truncated" boolean NOT NULL DEFAULT false,
        "created_at" timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX "IDX_request_bodies_created_at" ON "request_bodies" ("created_at")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "request_bodies"`);
    await q.query(`ALTER TABLE "routes" DROP COLUMN "capture_bodies"`);
    await q.query(`ALTER TABLE "api_keys" DROP COLUMN "capture_bodies"`);
    for (const column of ['user_id', 'team_id', 'model', 'status']) {
      await q.query(`DROP INDEX "IDX_request_log_${column}_created_at"`);
    }
    await q.query(`DROP INDEX "IDX_request_log_created_at_id"`);
    await q.query(`CREATE INDEX "IDX_request_log_created_at" ON "request_log" ("created_at")`);
    await q.query(`ALTER TABLE "request_log" DROP COLUMN "served_model"`);
    await q.query(`ALTER TABLE "request_log" DROP COLUMN "team_id"`);
  }
}
