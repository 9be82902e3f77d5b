import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, Repository, type EntityManager } from 'typeorm';
import { AdaptiveKeyState } from './adaptive-key-state.entity.js';

/**
 * The transaction an audited admin write runs in. Services hand it on (to `AuditService.record`,
 * `KeyPoolService.setMaxConcurrent`, `resetLearning`) without importing TypeORM themselves.
 */
export type TransactionManager = EntityManager;

/**
 * SQL for `adaptive_key_state`, the durable copy of the learned concurrency state: the start-up
 * load, the periodic version-guarded flush, the reset inside an audited transaction.
 */
@Injectable()
export class AdaptiveStateRepository {
  constructor(
    @InjectRepository(AdaptiveKeyState) private readonly rows: Repository<AdaptiveKeyState>,
    private readonly dataSource: DataSource,
  ) {}

  /** Every persisted key state (start-up). */
  all(): Promise<AdaptiveKeyState[]> {
    return this.rows.find();
  }

  /** The persisted states of the given keys (keys without a row are absent). */
  ofKeys(keyIds: readonly string[]): Promise<AdaptiveKeyState[]> {
    return this.rows.createQueryBuilder('a').where('a.key_id IN (:...ids)', { ids: keyIds }).getMany();
  }

  /**
   * Upserts the given snapshot records (one statement); a row only moves forward (its version
   * guards it), keys deleted meanwhile are skipped.
   */
  async upsertSnapshots(records: readonly Record<string, unknown>[]): Promise<void> {
    await this.rows.query(
      `INSERT INTO adaptive_key_state (key_id, provider_id, learned_limit, concurrent_429_count, rpm_429_count,
          tpm_429_count, unknown_429_count, last_429_at, last_429_type, last_concurrency_429_at, boundary,
          last_probe_at, adjustments, version, updated_at)
        SELECT r.key_id, r.provider_id, r.learned_limit, r.concurrent_429_count, r.rpm_429_count, r.tpm_429_count,
          r.unknown_429_count, r.last_429_at, r.last_429_type, r.last_concurrency_429_at, r.boundary,
          r.last_probe_at, COALESCE(r.adjustments, '[]'::jsonb), r.version, now()
          FROM jsonb_to_recordset($1::jsonb) AS r(key_id uuid, provider_id uuid, learned_limit integer,
            concurrent_429_count integer, rpm_429_count integer, tpm_429_count integer, unknown_429_count integer,
            last_429_at timestamptz, last_429_type varchar, last_concurrency_429_at timestamptz, boundary integer,
            last_probe_at timestamptz, adjustments jsonb, version bigint)
          JOIN provider_keys k ON k.id = r.key_id
      ON CONFLICT (key_id) DO UPDATE SET learned_limit = EXCLUDED.learned_limit,
        concurrent_429_count = EXCLUDED.concurrent_429_count, rpm_429_count = EXCLUDED.rpm_429_count,
        tpm_429_count = EXCLUDED.tpm_429_count, unknown_429_count = EXCLUDED.unknown_429_count,
        last_429_at = EXCLUDED.last_429_at, last_429_type = EXCLUDED.last_429_type,
        last_concurrency_429_at = EXCLUDED.last_concurrency_429_at, boundary = EXCLUDED.boundary,
        last_probe_at = EXCLUDED.last_probe_at, adjustments = EXCLUDED.adjustments,
        version = EXCLUDED.version, updated_at = now()
      WHERE adaptive_key_state.version < EXCLUDED.version`,
      [JSON.stringify(records)],
    );
  }

  /** Writes a key's reset learning state at `version` within the caller's transaction (version-guarded). */
  async resetKeyState(keyId: string, version: number, tx: TransactionManager): Promise<void> {
    await tx.query(
      `INSERT INTO adaptive_key_state (key_id, provider_id, version, updated_at)
         SELECT k.id, k.provider_id, $2, now() FROM provider_keys k WHERE k.id = $1
       ON CONFLICT (key_id) DO UPDATE SET learned_limit = NULL, concurrent_429_count = 0, rpm_429_count = 0,
         tpm_429_count = 0, unknown_429_count = 0, last_429_at = NULL, last_429_type = NULL,
         last_concurrency_429_at = NULL, boundary = NULL, last_probe_at = NULL, adjustments = '[]'::jsonb,
         version = EXCLUDED.version, updated_at = now()
       WHERE adaptive_key_state.version < EXCLUDED.version`,
      [keyId, version],
    );
  }

  /** Runs `work` in one transaction (an admin write and its audit row commit together or not at all). */
  inTransaction<T>(work: (tx: TransactionManager) => Promise<T>): Promise<T> {
    return this.dataSource.transaction(work);
  }
}
