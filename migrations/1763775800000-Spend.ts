import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Spend (docs/spend.md):
 * - `providers.pricing`: USD per million tokens per model id or `*` pattern ({} = catalog only);
 * - `request_log.cost_micro_usd`: the request's cost in integer micro-dollars (NULL: no price known,
 *   or a row from before this migration);
 * - `spend_rollup`: per hour (UTC) × key × user × team × provider × model totals, upserted by the
 *   request-log writer in the same statement as the rows it sums. NULLS NOT DISTINCT (Postgres ≥ 15)
 *   so a NULL key/user/team/provider/model still has one row per hour.
 */
export class Spend1763775800000 implements MigrationInterface {
  name = 'Spend1763775800000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "providers" ADD "pricing" jsonb NOT NULL DEFAULT '{}'::jsonb`);
    await q.query(`ALTER TABLE "request_log" ADD "cost_micro_usd" bigint`);
    await q.query(`
      CREATE TABLE "spend_rollup" (
        "hour" timestamptz NOT NULL,
        "api_key_id" uuid,
        "user_id" uuid,
        "team_id" uuid,
        "provider_id" uuid,
        "model" varchar(255),
        "requests" bigint NOT NULL DEFAULT 0,
        "prompt_tokens" bigint NOT NULL DEFAULT 0,
        "completion_tokens" bigint NOT NULL DEFAULT 0,
        "cost_micro_usd" bigint NOT NULL DEFAULT 0
      )`);
    await q.query(
      `CREATE UNIQUE INDEX "IDX_spend_rollup_bucket" ON "spend_rollup" ("hour", "api_key_id", "user_id", "team_id", "provider_id", "model") NULLS NOT DISTINCT`,
    );
    await q.query(`CREATE INDEX "IDX_spend_rollup_user_id_hour" ON "spend_rollup" ("user_id", "hour")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "spend_rollup"`);
    await q.query(`ALTER TABLE "request_log" DROP COLUMN "cost_micro_usd"`);
    await q.query(`ALTER TABLE "providers" DROP COLUMN "pricing"`);
  }
}
