import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Users and their API keys. Emails are unique case-insensitively (stored lower-case, indexed on
 * lower(email)); `jwt_subject` links a user to the `sub` of the identity provider's tokens. Keys are
 * stored as a SHA-256 hash (unique index: the one lookup the auth guard does), never raw.
 */
export class Auth1763770000000 implements MigrationInterface {
  name = 'Auth1763770000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "users" (
        "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        "email" varchar(320),
        "name" varchar(200),
        "role" varchar(16) NOT NULL,
        "disabled" boolean NOT NULL DEFAULT false,
        "jwt_subject" varchar(255),
        "created_at" timestamptz NOT NULL DEFAULT now(),
        "updated_at" timestamptz NOT NULL DEFAULT now(),
        "last_seen_at" timestamptz,
        CONSTRAINT "CHK_users_role" CHECK ("role" IN ('admin', 'developer', 'user', 'viewer'))
      )`);
    await q.query(`CREATE UNIQUE INDEX "IDX_users_email" ON "users" (lower("email"))`);
    await q.query(`CREATE UNIQUE INDEX "IDX_users_jwt_subject" ON "users" ("jwt_subject")`);
    await q.query(`CREATE INDEX "IDX_users_role" ON "users" ("role")`);

    await q.query(`
      CREATE TABLE "api_keys" (
        "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        "user_id" uuid NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE,
        "name" varchar(100) NOT NULL,
        "key_hash" char(64) NOT NULL,
        "prefix" varchar(8) NOT NULL,
        "last4" varchar(4) NOT NULL,
        "role" varchar(16) NOT NULL,
        "rpm" integer,
        "tpm" integer,
        "allowed_models" jsonb,
        "max_priority" varchar(8) NOT NULL DEFAULT 'high',
        "created_by" uuid,
        "expires_at" timestamptz,
        "revoked_at" timestamptz,
        "last_used_at" timestamptz,
        "created_at" timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "CHK_api_keys_role" CHECK ("role" IN ('admin', 'developer', 'user', 'viewer')),
        CONSTRAINT "CHK_api_keys_max_priority" CHECK ("max_priority" IN ('urgent', 'high', 'normal', 'low'))
      )`);
    await q.query(`CREATE UNIQUE INDEX "IDX_api_keys_hash" ON "api_keys" ("key_hash")`);
    await q.query(`CREATE INDEX "IDX_api_keys_user_id_created_at" ON "api_keys" ("user_id", "created_at")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "api_keys"`);
    await q.query(`DROP TABLE "users"`);
  }
}
