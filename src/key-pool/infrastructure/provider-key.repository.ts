import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, Repository, type DeepPartial } from 'typeorm';
import type { KeyCipher } from '../domain/key-cipher.js';
import { announcedKeyIds, announceEncryptionKeys } from './encryption-key-registry.js';
import { healProviderKeys, type HealOptions, type HealResult } from './key-heal.js';
import { KeyUsageMinute } from './key-usage-minute.entity.js';
import { ProviderKey } from './provider-key.entity.js';
import type { InTransaction, TransactionManager } from './provider.repository.js';

/** One key with its provider's name, as `keyStates()` reads it (no secrets). */
export interface KeyStateRow {
  id: string;
  label: string;
  provider_id: string;
  provider_name: string;
  enabled: boolean;
  broken_at: Date | null;
  invalid_at: Date | null;
  cooldown_until: Date | null;
  priority: number;
  max_rpm: number | null;
  max_concurrent: number | null;
}

/** One key's concurrency setting, as `concurrencySettings()` reads it (no secrets). */
export interface ConcurrencySettingRow {
  id: string;
  label: string;
  provider_id: string;
  provider_name: string;
  enabled: boolean;
  max_concurrent: number | null;
}

/** Rows an UPDATE … RETURNING produced (the driver answers `[rows, count]`, PGlite sometimes just `rows`). */
function returned<T>(res: [T[], number] | T[]): T[] {
  return (Array.isArray(res[0]) ? res[0] : res) as T[];
}

/**
 * SQL for `provider_keys` (and its per-minute usage rows, and the encryption-key registry the
 * ciphertexts depend on): the key pool's reads, the state marks (cooldown, invalid, broken), the
 * admin writes that commit with their audit row, and the re-encryption heal.
 */
@Injectable()
export class ProviderKeyRepository {
  constructor(
    @InjectRepository(ProviderKey) private readonly keys: Repository<ProviderKey>,
    @InjectRepository(KeyUsageMinute) private readonly usageRows: Repository<KeyUsageMinute>,
    private readonly dataSource: DataSource,
  ) {}

  // ---- reads --------------------------------------------------------------------------------

  byId(id: string): Promise<ProviderKey | null> {
    return this.keys.findOneBy({ id });
  }

  /** A provider's keys (no particular order). */
  ofProvider(providerId: string): Promise<ProviderKey[]> {
    return this.keys.find({ where: { providerId } });
  }

  /** A provider's keys in selection order (priority, then id). */
  ofProviderInSelectionOrder(providerId: string): Promise<ProviderKey[]> {
    return this.keys.find({ where: { providerId }, order: { priority: 'ASC', id: 'ASC' } });
  }

  /** A provider's keys as the admin API lists them (priority, then creation). */
  ofProviderForListing(providerId: string): Promise<ProviderKey[]> {
    return this.keys.find({ where: { providerId }, order: { priority: 'ASC', createdAt: 'ASC' } });
  }

  /** Ids of a provider's keys. */
  async idsOfProvider(providerId: string): Promise<string[]> {
    const rows = await this.keys.find({ where: { providerId }, select: { id: true } });
    return rows.map((k) => k.id);
  }

  /** Every key's state columns (the per-provider key counts of the provider list). */
  stateColumnsOfAll(): Promise<
    Pick<ProviderKey, 'id' | 'providerId' | 'enabled' | 'brokenAt' | 'invalidAt' | 'cooldownUntil'>[]
  > {
    return this.keys.find({
      select: {
        id: true,
        providerId: true,
        enabled: true,
        brokenAt: true,
        invalidAt: true,
        cooldownUntil: true,
      },
    });
  }

  /** A key of the provider with this label (case-insensitive), if any. */
  byLabelIgnoringCase(providerId: string, label: string): Promise<ProviderKey | null> {
    return this.keys
      .createQueryBuilder('k')
      .where('k.provider_id = :providerId AND lower(k.label) = lower(:label)', { providerId, label })
      .getOne();
  }

  /** Every key with its provider's name, by provider name, priority, id. One query. */
  async keyStates(): Promise<KeyStateRow[]> {
    return (await this.keys.query(
      `SELECT k.id, k.label, k.provider_id, p.name AS provider_name, k.enabled, k.broken_at, k.invalid_at, k.cooldown_until, k.priority,
              k.max_rpm, k.max_concurrent
         FROM provider_keys k JOIN providers p ON p.id = k.provider_id ORDER BY p.name, k.priority, k.id`,
    )) as KeyStateRow[];
  }

  /** Every key's concurrency setting, optionally of one provider or one key. One query. */
  async concurrencySettings(
    filter: { providerId?: string; keyId?: string } = {},
  ): Promise<ConcurrencySettingRow[]> {
    const where: string[] = [];
    const params: string[] = [];
    if (filter.providerId !== undefined) {
      params.push(filter.providerId);
      where.push(`k.provider_id = $${params.length}`);
    }
    if (filter.keyId !== undefined) {
      params.push(filter.keyId);
      where.push(`k.id = $${params.length}`);
    }
    return (await this.keys.query(
      `SELECT k.id, k.label, k.provider_id, p.name AS provider_name, k.enabled, k.max_concurrent
         FROM provider_keys k JOIN providers p ON p.id = k.provider_id
        ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY p.name, k.priority, k.created_at, k.id`,
      params,
    )) as ConcurrencySettingRow[];
  }

  /** A key's per-minute usage rows from `start` on, oldest first. */
  usageMinutesSince(keyId: string, start: Date): Promise<KeyUsageMinute[]> {
    return this.usageRows
      .createQueryBuilder('u')
      .where('u.key_id = :id AND u.minute >= :start', { id: keyId, start })
      .orderBy('u.minute', 'ASC')
      .getMany();
  }

  // ---- state marks (the key pool) -----------------------------------------------------------

  /** The durable copy of a 429 cooldown (never shortens a longer one already stored). */
  async persistCooldown(keyId: string, until: Date): Promise<void> {
    await this.keys.query(
      `UPDATE provider_keys SET cooldown_until = GREATEST(COALESCE(cooldown_until, to_timestamp(0)), $2::timestamptz), last_429_at = now() WHERE id = $1`,
      [keyId, until.toISOString()],
    );
  }

  /** Marks a key invalid (the upstream refused it); true when this call flipped it. */
  async markKeyInvalid(keyId: string): Promise<boolean> {
    const rows = (await this.keys.query(
      `UPDATE provider_keys SET invalid_at = now() WHERE id = $1 AND invalid_at IS NULL RETURNING id`,
      [keyId],
    )) as [unknown[], number] | unknown[];
    return returned(rows).length > 0;
  }

  /** Marks a key broken (its value does not decrypt); true when this call flipped it. */
  async markKeyBroken(keyId: string): Promise<boolean> {
    const res = (await this.keys.query(
      `UPDATE provider_keys SET broken_at = now() WHERE id = $1 AND broken_at IS NULL RETURNING id`,
      [keyId],
    )) as [unknown[], number];
    return (res[0]?.length ?? 0) > 0;
  }

  /**
   * Sets a key's max_concurrent within the caller's transaction; the previous value and the key's
   * provider, or null when the key does not exist.
   */
  async setMaxConcurrent(
    keyId: string,
    maxConcurrent: number | null,
    tx: TransactionManager,
  ): Promise<{ previous: number | null; providerId: string } | null> {
    const rows = (await tx.query(
      `UPDATE provider_keys k SET max_concurrent = $2, updated_at = now()
         FROM (SELECT id, max_concurrent FROM provider_keys WHERE id = $1 FOR UPDATE) old
        WHERE k.id = old.id
        RETURNING k.provider_id, old.max_concurrent AS previous`,
      [keyId, maxConcurrent],
    )) as
      | [{ provider_id: string; previous: number | null }[], number]
      | { provider_id: string; previous: number | null }[];
    const row = returned(rows)[0];
    if (!row) return null;
    return { previous: row.previous, providerId: row.provider_id };
  }

  // ---- admin writes: each commits together with its audit row -------------------------------

  /** An unsaved entity from the given fields. */
  build(fields: DeepPartial<ProviderKey>): ProviderKey {
    return this.keys.create(fields);
  }

  /** Inserts the key and runs `audit` in the same transaction: both commit or neither. */
  async insertWithAudit(key: ProviderKey, audit: InTransaction): Promise<void> {
    await this.dataSource.transaction(async (m) => {
      await m.insert(ProviderKey, key);
      await audit(m);
    });
  }

  /** Applies `patch` (when not empty) and runs `audit` in the same transaction: both commit or neither. */
  async updateWithAudit(id: string, patch: Partial<ProviderKey>, audit: InTransaction): Promise<void> {
    await this.dataSource.transaction(async (m) => {
      if (Object.keys(patch).length > 0) await m.update(ProviderKey, { id }, patch);
      await audit(m);
    });
  }

  /** Deletes the key and runs `audit` in the same transaction: both commit or neither. */
  async deleteWithAudit(id: string, audit: InTransaction): Promise<void> {
    await this.dataSource.transaction(async (m) => {
      await m.delete(ProviderKey, { id });
      await audit(m);
    });
  }

  // ---- encryption ---------------------------------------------------------------------------

  /** Announces this instance's encryption key ids; throws ConfigError on material that disagrees. */
  announceEncryptionKeys(cipher: KeyCipher): Promise<void> {
    return announceEncryptionKeys(this.dataSource, cipher);
  }

  /** Every encryption key id some instance has announced. */
  announcedEncryptionKeyIds(): Promise<Set<string>> {
    return announcedKeyIds(this.keys);
  }

  /** Re-seals every value not under the current encryption key (batched, resumable; see key-heal.ts). */
  healSealedValues(cipher: KeyCipher, options: HealOptions): Promise<HealResult> {
    return healProviderKeys(this.dataSource, cipher, options);
  }
}
