import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Provider kinds (issue 17 item 2): `openai` (an OpenAI-compatible API, the default) or `anthropic`
 * (the Anthropic Messages API: `x-api-key` + `anthropic-version` headers, its own usage fields).
 */
export class ProviderKind1763776750000 implements MigrationInterface {
  name = 'ProviderKind1763776750000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "providers" ADD "kind" varchar(16) NOT NULL DEFAULT 'openai'`);
    await q.query(
      `ALTER TABLE "providers" ADD CONSTRAINT "CHK_providers_kind" CHECK ("kind" IN ('openai', 'anthropic'))`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "providers" DROP CONSTRAINT "CHK_providers_kind"`);
    await q.query(`ALTER TABLE "providers" DROP COLUMN "kind"`);
  }
}
