import type { MigrationInterface, QueryRunner } from 'typeorm';

/** One row per relayed request, written in batches by the relay (never one write per request). */
export class RequestLog1763773000000 implements MigrationInterface {
  name = 'RequestLog1763773000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "request_log" (
        "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        "created_at" timestamptz NOT NULL DEFAULT now(),
        "request_id" varchar(128) NOT NULL,
        "api_key_id" uuid,
        "user_id" uuid,
        "provider_id" uuid,
        "provider_key_id" uuid,
        "endpoint" varchar(32) NOT NULL,
        "model" varchar(255),
        "priority" varchar(8) NOT NULL,
        "status" integer NOT NULL,
        "error_code" varchar(64),
        "prompt_tokens" integer NOT NULL DEFAULT 0,
        "completion_tokens" integer NOT NULL DEFAULT 0,
        "queue_ms" integer NOT NULL DEFAULT 0,
        "upstream_ms" integer NOT NULL DEFAULT 0,
        "overhead_ms" integer NOT NULL DEFAULT 0,
        "attempts" smallint NOT NULL DEFAULT 1,
        "stream" boolean NOT NULL DEFAULT false
      )`);
    await q.query(`CREATE INDEX "IDX_request_log_created_at" ON "request_log" ("created_at")`);
    await q.query(
      `CREATE INDEX "IDX_request_log_api_key_id_created_at" ON "request_log" ("api_key_id", "created_at")`,
    );
    await q.query(
      `CREATE INDEX "IDX_request_log_provider_id_created_at" ON "request_log" ("provider_id", "created_at")`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "request_log"`);
  }
}
