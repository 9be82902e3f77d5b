import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Instances register themselves here at start (status pages list them); the first table of the schema. */
export class Init1763769600000 implements MigrationInterface {
  name = 'Init1763769600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "instances" (
        "id" uuid PRIMARY KEY,
        "hostname" varchar(255) NOT NULL,
        "pid" integer NOT NULL,
        "version" varchar(64) NOT NULL,
        "mode" varchar(16) NOT NULL,
        "started_at" timestamptz NOT NULL DEFAULT now(),
        "last_seen_at" timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX "IDX_instances_last_seen_at" ON "instances" ("last_seen_at")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "instances"`);
  }
}
