import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Routing: a route maps the model name a client sends (`model`, unique) to targets
 * `[{provider_id, model, weight, tier, timeouts, breaker}]` (jsonb: a target's provider may be
 * deleted later — the relay skips it, the admin API shows `provider: null`). `source` as for
 * providers: `file` rows are PROVIDERS_FILE's and pruned when the file drops them.
 */
export class Routes1763775700000 implements MigrationInterface {
  name = 'Routes1763775700000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "routes" (
        "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        "model" varchar(255) NOT NULL,
        "targets" jsonb NOT NULL DEFAULT '[]'::jsonb,
        "max_attempts" smallint NOT NULL DEFAULT 3,
        "enabled" boolean NOT NULL DEFAULT true,
        "source" varchar(8) NOT NULL DEFAULT 'api',
        "created_at" timestamptz NOT NULL DEFAULT now(),
        "updated_at" timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "CHK_routes_source" CHECK ("source" IN ('api', 'file')),
        CONSTRAINT "CHK_routes_max_attempts" CHECK ("max_attempts" BETWEEN 1 AND 10)
      )`);
    await q.query(`CREATE UNIQUE INDEX "IDX_routes_model" ON "routes" ("model")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "routes"`);
  }
}
