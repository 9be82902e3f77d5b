import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * One row per ENCRYPTION_KEYS id any instance has started with: a fingerprint of its material
 * (HMAC-SHA256 keyed by the material over a fixed label; the material itself is never stored).
 * An instance whose material for a known id differs refuses to start (src/key-pool/encryption-key-registry.ts),
 * and a row sealed under an id another instance announced is never marked broken by one that lacks it.
 */
export class EncryptionKeys1763774700000 implements MigrationInterface {
  name = 'EncryptionKeys1763774700000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE "encryption_keys" (
        "id" varchar(32) PRIMARY KEY,
        "fingerprint" varchar(64) NOT NULL,
        "created_at" timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "encryption_keys"`);
  }
}
