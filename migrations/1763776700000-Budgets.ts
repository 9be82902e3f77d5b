import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Spend budgets on API keys and users (issue 16 item 2, docs/spend.md "Budgets"), like the team's:
 * integer micro-dollars per UTC calendar period (`day`, `week`, `month`) or `total`; both columns set
 * or both null (no budget).
 */
export class Budgets1763776700000 implements MigrationInterface {
  name = 'Budgets1763776700000';

  async up(q: QueryRunner): Promise<void> {
    for (const table of ['api_keys', 'users']) {
      await q.query(`ALTER TABLE "${table}" ADD "budget_limit_micros" bigint`);
      await q.query(`ALTER TABLE "${table}" ADD "budget_period" varchar(8)`);
      await q.query(
        `ALTER TABLE "${table}" ADD CONSTRAINT "CHK_${table}_budget" CHECK (("budget_limit_micros" IS NULL) = ("budget_period" IS NULL))`,
      );
      await q.query(
        `ALTER TABLE "${table}" ADD CONSTRAINT "CHK_${table}_budget_period" CHECK ("budget_period" IN ('day', 'week', 'month', 'total'))`,
      );
    }
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of ['api_keys', 'users']) {
      await q.query(`ALTER TABLE "${table}" DROP CONSTRAINT "CHK_${table}_budget_period"`);
      await q.query(`ALTER TABLE "${table}" DROP CONSTRAINT "CHK_${table}_budget"`);
      await q.query(`ALTER TABLE "${table}" DROP COLUMN "budget_period"`);
      await q.query(`ALTER TABLE "${table}" DROP COLUMN "budget_limit_micros"`);
    }
  }
}
