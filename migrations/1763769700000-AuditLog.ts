import type { MigrationInterface, QueryRunner } from 'typeorm';

export class AuditLog1763769700000 implements MigrationInterface {
  name = 'AuditLog1763769700000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "audit_log" (
        "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        "actor_id" uuid,
        "actor_role" varchar(16),
        "action" varchar(64) NOT NULL,
        "target_type" varchar(32) NOT NULL,
        "target_id" varchar(255),
        "changes" jsonb NOT NULL DEFAULT '{}'::jsonb,
        "ip" varchar(64),
        "request_id" varchar(128),
        "created_at" timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX "IDX_audit_log_created_at" ON "audit_log" ("created_at")`);
    await q.query(`CREATE INDEX "IDX_audit_log_target" ON "audit_log" ("target_type", "target_id")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "audit_log"`);
  }
}
