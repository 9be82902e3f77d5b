import type { DataSource } from 'typeorm';
import { announcedKeyIds, valueIsBad } from './encryption-key-registry.js';
import { KeyCipher, providerKeyAad } from '../domain/key-cipher.js';

export interface HealLogger {
  log(message: string): void;
  warn(message: string): void;
}

export interface HealOptions {
  batchSize: number;
  /** Stop after this many batches (tests simulate a process killed halfway). */
  maxBatches?: number;
  logger: HealLogger;
}

export interface HealResult {
  /** Rows that needed work when the heal started. */
  total: number;
  /** Re-encrypted under the current key. */
  healed: number;
  /** Newly marked broken (no configured key decrypts them). */
  broken: number;
  /** Previously broken rows that decrypt again (a key came back into ENCRYPTION_KEYS). */
  recovered: number;
  /** Still broken after this run. */
  stillBroken: number;
  /** Sealed under a key id another instance announced and this one lacks: left alone (not broken). */
  elsewhere: number;
  batches: number;
  complete: boolean;
}

interface Row {
  id: string;
  key_id: string;
  ciphertext: string;
  broken_at: Date | null;
}

/**
 * Start-up heal: every row not sealed under the current encryption key (and every broken row, in
 * case its key came back) is decrypted and re-sealed under the current key.
 *
 * Batch by batch, each batch one transaction (`FOR UPDATE SKIP LOCKED`, so instances starting
 * together share the work instead of colliding): a process killed halfway leaves every row either
 * fully old or fully new, and the next start continues with what is left — idempotent and resumable.
 * A row no key can decrypt is marked broken (kept, logged once) and never stops the heal.
 */
export async function healProviderKeys(
  dataSource: DataSource,
  cipher: KeyCipher,
  options: HealOptions,
): Promise<HealResult> {
  const current = cipher.currentKeyId;
  const [{ count }] = (await dataSource.query(
    `SELECT count(*)::int AS count FROM provider_keys WHERE key_id <> $1 OR broken_at IS NOT NULL`,
    [current],
  )) as [{ count: number }];
  const result: HealResult = {
    total: count,
    healed: 0,
    broken: 0,
    recovered: 0,
    stillBroken: 0,
    elsewhere: 0,
    batches: 0,
    complete: false,
  };
  if (count === 0) {
    result.complete = true;
    return result;
  }
  options.logger.log(`healing ${count} upstream key(s) not sealed under encryption key "${current}"…`);
  const announced = await announcedKeyIds(dataSource);
  let cursor = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    if (options.maxBatches !== undefined && result.batches >= options.maxBatches) break;
    const processed = await dataSource.transaction(async (tx) => {
      const rows = (await tx.query(
        `SELECT id, key_id, ciphertext, broken_at FROM provider_keys
          WHERE (key_id <> $1 OR broken_at IS NOT NULL) AND id > $2
          ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED`,
        [current, cursor, options.batchSize],
      )) as Row[];
      for (const row of rows) {
        let plaintext: string | null = null;
        try {
          plaintext = cipher.decrypt(
            { keyId: row.key_id, ciphertext: row.ciphertext },
            providerKeyAad(row.id),
          );
        } catch {
          plaintext = null;
        }
        if (plaintext === null) {
          if (!valueIsBad(row.key_id, cipher, announced)) {
            // Another replica holds this key (a rotation in progress): the value is fine, we just can't read it.
            result.elsewhere++;
            continue;
          }
          if (row.broken_at) {
            result.stillBroken++;
          } else {
            await tx.query(`UPDATE provider_keys SET broken_at = now() WHERE id = $1`, [row.id]);
            result.broken++;
            options.logger.warn(
              `upstream key ${row.id} cannot be decrypted with any ENCRYPTION_KEYS entry (sealed under "${row.key_id}"); marked broken — replace its value or restore the key`,
            );
          }
          continue;
        }
        if (row.key_id === current && !row.broken_at) continue;
        const sealed = cipher.encrypt(plaintext, providerKeyAad(row.id));
        await tx.query(
          `UPDATE provider_keys SET ciphertext = $2, key_id = $3, broken_at = NULL, updated_at = now() WHERE id = $1`,
          [row.id, sealed.ciphertext, sealed.keyId],
        );
        if (row.broken_at) {
          result.recovered++;
          options.logger.log(`upstream key ${row.id} decrypts again; no longer broken`);
        } else {
          result.healed++;
        }
      }
      if (rows.length > 0) cursor = rows[rows.length - 1]!.id;
      return rows.length;
    });
    if (processed === 0) {
      result.complete = true;
      break;
    }
    result.batches++;
    options.logger.log(`healed ${result.healed + result.recovered}/${count} keys`);
  }
  if (result.elsewhere > 0) {
    options.logger.warn(
      `${result.elsewhere} upstream key(s) are sealed under encryption key id(s) another instance announced and this one lacks (ENCRYPTION_KEYS); left as they are, not served by this instance`,
    );
  }
  if (result.complete) {
    options.logger.log(
      `heal done: ${result.healed} re-encrypted, ${result.recovered} recovered, ${result.broken} newly broken, ${result.stillBroken} still broken`,
    );
  }
  return result;
}
