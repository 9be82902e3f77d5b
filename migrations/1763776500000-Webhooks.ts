import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Alerts: `webhooks` (url, subscribed events, the signing secret sealed like upstream keys:
 * AES-256-GCM under ENCRYPTION_KEYS, AAD `webhook:<id>`) and `webhook_deliveries` (one row per
 * event × webhook: the exact body sent, status, every attempt in `attempt_log`, when the next one is
 * due, and a claim — `claimed_until` / `claim_token` — so one instance sends it at a time).
 */
export class Webhooks1763776500000 implements MigrationInterface {
  name = 'Webhooks1763776500000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "webhooks" (
        "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        "url" varchar(2048) NOT NULL,
        "events" jsonb NOT NULL DEFAULT '[]'::jsonb,
        "secret_ciphertext" text NOT NULL,
        "encryption_key_id" varchar(64) NOT NULL,
        "secret_hint" varchar(16) NOT NULL,
        "enabled" boolean NOT NULL DEFAULT true,
        "created_at" timestamptz NOT NULL DEFAULT now(),
        "updated_at" timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE "webhook_deliveries" (
        "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        "webhook_id" uuid NOT NULL REFERENCES "webhooks" ("id") ON DELETE CASCADE,
        "event_id" uuid NOT NULL,
        "event_type" varchar(64) NOT NULL,
        "body" text NOT NULL,
        "status" varchar(12) NOT NULL DEFAULT 'pending',
        "attempts" smallint NOT NULL DEFAULT 0,
        "attempt_log" jsonb NOT NULL DEFAULT '[]'::jsonb,
        "next_attempt_at" timestamptz NOT NULL DEFAULT now(),
        "claimed_until" timestamptz NULL,
        "claim_token" uuid NULL,
        "last_http_status" smallint NULL,
        "last_error" varchar(500) NULL,
        "last_duration_ms" integer NULL,
        "created_at" timestamptz NOT NULL DEFAULT now(),
        "completed_at" timestamptz NULL,
        CONSTRAINT "CHK_webhook_deliveries_status" CHECK ("status" IN ('pending', 'delivered', 'failed'))
      )`);
    await q.query(
      `CREATE INDEX "IDX_webhook_deliveries_next_attempt_at" ON "webhook_deliveries" ("next_attempt_at") WHERE "status" = 'pending'`,
    );
    await q.query(
      `CREATE INDEX "IDX_webhook_deliveries_webhook_id_created_at" ON "webhook_deliveries" ("webhook_id", "created_at" DESC, "id" DESC)`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "webhook_deliveries"`);
    await q.query(`DROP TABLE "webhooks"`);
  }
}
