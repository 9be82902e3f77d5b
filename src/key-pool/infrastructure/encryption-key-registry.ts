import type { DataSource, EntityManager } from 'typeorm';
import { ConfigError } from '../../config/app-config.js';
import type { KeyCipher } from '../domain/key-cipher.js';

type Queryable = Pick<DataSource | EntityManager, 'query'>;

/**
 * Replicas sharing a database must share ENCRYPTION_KEYS material. At start each instance announces
 * its key ids with their fingerprints (first announcement wins) and compares: material for a known id
 * that disagrees is a configuration error (exit 2), named by id, never by material. Without this, an
 * instance with other material for the same id would take every row it cannot decrypt for a broken
 * ciphertext and mark it broken for everyone.
 */
export async function announceEncryptionKeys(db: Queryable, cipher: KeyCipher): Promise<void> {
  const mine = cipher.fingerprints();
  for (const { id, fingerprint } of mine) {
    await db.query(
      `INSERT INTO encryption_keys (id, fingerprint) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`,
      [id, fingerprint],
    );
  }
  const known = new Map(
    (
      (await db.query(`SELECT id, fingerprint FROM encryption_keys WHERE id = ANY($1::varchar[])`, [
        mine.map((k) => k.id),
      ])) as { id: string; fingerprint: string }[]
    ).map((r) => [r.id, r.fingerprint]),
  );
  const clashing = mine.filter((k) => known.has(k.id) && known.get(k.id) !== k.fingerprint).map((k) => k.id);
  if (clashing.length > 0) {
    throw new ConfigError(
      clashing.map(
        (id) =>
          `ENCRYPTION_KEYS: the material of key "${id}" differs from the one this database's upstream keys are sealed with (another instance announced "${id}" with other material). Every instance sharing a database needs the same ENCRYPTION_KEYS; copy the value from a running instance (a development instance generates its own into DATA_DIR/secrets.json).`,
      ),
    );
  }
}

/** Every key id some instance has announced (the rows sealed under them are readable somewhere). */
export async function announcedKeyIds(db: Queryable): Promise<Set<string>> {
  const rows = (await db.query(`SELECT id FROM encryption_keys`)) as { id: string }[];
  return new Set(rows.map((r) => r.id));
}

/**
 * Whether a value that did not decrypt here is itself bad (and may be marked broken for everyone):
 * yes when it is sealed under a key this instance holds (its material is the shared one, checked at
 * start) or under a key no instance ever announced (lost). A key id another instance announced and
 * this one lacks (a rolling rotation) says nothing about the value: not this instance's call.
 */
export function valueIsBad(sealedUnder: string, cipher: KeyCipher, announced: ReadonlySet<string>): boolean {
  return cipher.has(sealedUnder) || !announced.has(sealedUnder);
}
