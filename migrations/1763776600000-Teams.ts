import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Teams (issue 16, docs/auth.md "Teams"): a team has a unique name, a fair-share `weight` (1..1000,
 * used by the queue later), request/token limits, a budget (stored now, enforced later: micro-dollars,
 * never floats), allowed models (null = all) and a max priority (default urgent: no ceiling beyond the key's). A user belongs to at most one team
 * (`users.team_id` + `team_role`, both set or both null); an API key carries its owner's team
 * (`api_keys.team_id`, kept equal to the owner's team on join and leave). Deleting a team detaches
 * its members and keys (ON DELETE SET NULL).
 */
export class Teams1763776600000 implements MigrationInterface {
  name = 'Teams1763776600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "teams" (
        "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        "name" varchar(100) NOT NULL,
        "weight" integer NOT NULL DEFAULT 1,
        "rpm" integer,
        "tpm" integer,
        "budget_limit_micros" bigint,
        "budget_period" varchar(8),
        "allowed_models" jsonb,
        "max_priority" varchar(8) NOT NULL DEFAULT 'urgent',
        "created_at" timestamptz NOT NULL DEFAULT now(),
        "updated_at" timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "CHK_teams_weight" CHECK ("weight" BETWEEN 1 AND 1000),
        CONSTRAINT "CHK_teams_budget" CHECK (("budget_limit_micros" IS NULL) = ("budget_period" IS NULL)),
        CONSTRAINT "CHK_teams_budget_period" CHECK ("budget_period" IN ('day', 'week', 'month', 'total')),
        CONSTRAINT "CHK_teams_max_priority" CHECK ("max_priority" IN ('urgent', 'high', 'normal', 'low'))
      )`);
    await q.query(`CREATE UNIQUE INDEX "IDX_teams_name" ON "teams" (lower("name"))`);
    await q.query(`ALTER TABLE "users" ADD "team_id" uuid REFERENCES "teams"("id") ON DELETE SET NULL`);
    await q.query(`ALTER TABLE "users" ADD "team_role" varchar(16)`);
    await q.query(
      `ALTER TABLE "users" ADD CONSTRAINT "CHK_users_team_role" CHECK (("team_id" IS NULL) = ("team_role" IS NULL) AND "team_role" IN ('member', 'team_admin'))`,
    );
    await q.query(`CREATE INDEX "IDX_users_team_id" ON "users" ("team_id")`);
    await q.query(`ALTER TABLE "api_keys" ADD "team_id" uuid REFERENCES "teams"("id") ON DELETE SET NULL`);
    await q.query(`CREATE INDEX "IDX_api_keys_team_id" ON "api_keys" ("team_id")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX "IDX_api_keys_team_id"`);
    await q.query(`ALTER TABLE "api_keys" DROP COLUMN "team_id"`);
    await q.query(`DROP INDEX "IDX_users_team_id"`);
    await q.query(`ALTER TABLE "users" DROP CONSTRAINT "CHK_users_team_role"`);
    await q.query(`ALTER TABLE "users" DROP COLUMN "team_role"`);
    await q.query(`ALTER TABLE "users" DROP COLUMN "team_id"`);
    await q.query(`DROP TABLE "teams"`);
  }
}
