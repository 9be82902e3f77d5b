import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * KeyPool: providers, their upstream keys (ciphertext only, see src/key-pool/key-cipher.ts) and
 * per-key per-minute usage. Key state is derived from enabled / broken_at / invalid_at /
 * cooldown_until — cooling down never touches the admin's `enabled` flag.
 */
export class KeyPool1763771000000 implements MigrationInterface {
  name = 'KeyPool1763771000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "providers" (
        "id" uuid PRIMARY KEY,
        "name" varchar(64) NOT NULL,
        "base_url" varchar(2048) NOT NULL,
        "models" jsonb NOT NULL DEFAULT '[]'::jsonb,
        "rpm" integer,
        "burst" integer,
        "timeout_ms" integer NOT NULL DEFAULT 60000,
        "enabled" boolean NOT NULL DEFAULT true,
        "headers" jsonb NOT NULL DEFAULT '{}'::jsonb,
        "source" varchar(8) NOT NULL DEFAULT 'api',
        "created_at" timestamptz NOT NULL DEFAULT now(),
        "updated_at" timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "CHK_providers_source" CHECK ("source" IN ('api', 'file'))
      )`);
    await q.query(`CREATE UNIQUE INDEX "IDX_providers_name" ON "providers" (lower("name"))`);

    await q.query(`
      CREATE TABLE "provider_keys" (
        "id" uuid PRIMARY KEY,
        "provider_id" uuid NOT NULL REFERENCES "providers" ("id") ON DELETE CASCADE,
        "label" varchar(128) NOT NULL,
        "ciphertext" text NOT NULL,
        "key_id" varchar(32) NOT NULL,
        "masked" varchar(32) NOT NULL,
        "priority" integer NOT NULL DEFAULT 1,
        "max_rpm" integer,
        "max_tpm" integer,
        "max_concurrent" integer,
        "enabled" boolean NOT NULL DEFAULT true,
        "broken_at" timestamptz,
        "invalid_at" timestamptz,
        "cooldown_until" timestamptz,
        "last_429_at" timestamptz,
        "total_requests" bigint NOT NULL DEFAULT 0,
        "total_tokens" bigint NOT NULL DEFAULT 0,
        "last_used_at" timestamptz,
        "source" varchar(8) NOT NULL DEFAULT 'api',
        "created_at" timestamptz NOT NULL DEFAULT now(),
        "updated_at" timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "CHK_provider_keys_source" CHECK ("source" IN ('api', 'file'))
      )`);
    await q.query(`CREATE INDEX "IDX_provider_keys_provider_id" ON "provider_keys" ("provider_id")`);
    await q.query(`CREATE INDEX "IDX_provider_keys_encryption_key_id" ON "provider_keys" ("key_id")`);
    await q.query(
      `CREATE UNIQUE INDEX "IDX_provider_keys_provider_id_label" ON "provider_keys" ("provider_id", lower("label"))`,
    );

    await q.query(`
      CREATE TABLE "key_usage_minutes" (
        "key_id" uuid NOT NULL REFERENCES "provider_keys" ("id") ON DELETE CASCADE,
        "minute" timestamptz NOT NULL,
        "requests" integer NOT NULL DEFAULT 0,
        "tokens" bigint NOT NULL DEFAULT 0,
        "rate_limited" integer NOT NULL DEFAULT 0,
        "errors" integer NOT NULL DEFAULT 0,
        PRIMARY KEY ("key_id", "minute")
      )`);
    await q.query(`CREATE INDEX "IDX_key_usage_minutes_minute" ON "key_usage_minutes" ("minute")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "key_usage_minutes"`);
    await q.query(`DROP TABLE "provider_keys"`);
    await q.query(`DROP TABLE "providers"`);
  }
}
