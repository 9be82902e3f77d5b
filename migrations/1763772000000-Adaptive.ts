import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Adaptive: the durable copy of each upstream key's learned concurrency state (the live copy is in
 * the shared store; see docs/adaptive.md). Written in batches, reloaded into the store at start.
 * `version` orders writes from several instances (an older snapshot never overwrites a newer one).
 */
export class Adaptive1763772000000 implements MigrationInterface {
  name = 'Adaptive1763772000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "adaptive_key_state" (
        "key_id" uuid PRIMARY KEY REFERENCES "provider_keys" ("id") ON DELETE CASCADE,
        "provider_id" uuid NOT NULL,
        "learned_limit" integer,
        "concurrent_429_count" integer NOT NULL DEFAULT 0,
        "rpm_429_count" integer NOT NULL DEFAULT 0,
        "tpm_429_count" integer NOT NULL DEFAULT 0,
        "unknown_429_count" integer NOT NULL DEFAULT 0,
        "last_429_at" timestamptz,
        "last_429_type" varchar(16),
        "last_concurrency_429_at" timestamptz,
        "boundary" integer,
        "last_probe_at" timestamptz,
        "adjustments" jsonb NOT NULL DEFAULT '[]'::jsonb,
        "version" bigint NOT NULL DEFAULT 0,
        "updated_at" timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "CHK_adaptive_key_state_last_429_type" CHECK ("last_429_type" IN ('concurrency', 'rpm', 'tpm', 'unknown'))
      )`);
    await q.query(
      `CREATE INDEX "IDX_adaptive_key_state_provider_id" ON "adaptive_key_state" ("provider_id")`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "adaptive_key_state"`);
  }
}
