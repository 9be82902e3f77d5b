import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The request log keeps the route that served a request (`route_id`, null without a route) and every
 * upstream attempt (`attempt_log`: a JSON array, oldest first, of `{attempt, provider_id, model,
 * key_id, status, outcome, ms}` — src/relay/domain/attempt.ts). Both nullable: rows written before
 * this migration, and by an instance without it, stay valid.
 */
export class RequestLogAttempts1763775600000 implements MigrationInterface {
  name = 'RequestLogAttempts1763775600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE "request_log" ADD COLUMN "route_id" uuid NULL, ADD COLUMN "attempt_log" jsonb NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "request_log" DROP COLUMN "attempt_log", DROP COLUMN "route_id"`);
  }
}
