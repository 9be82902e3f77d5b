import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** One adjustment of a learned limit, as stored in `adjustments` (and answered by the admin API). */
export interface StoredAdjustment {
  timestamp: string;
  old_limit: number;
  new_limit: number;
  reason: string;
  in_flight: number;
}

const bigint = { to: (v: number) => v, from: (v: string | null) => Number(v ?? 0) };

/**
 * The durable copy of an upstream key's learned concurrency state (the live copy is in the shared
 * store). Written in batches by AdaptivePersistence, loaded into the store at start.
 */
@Entity({ name: 'adaptive_key_state' })
@Index('IDX_adaptive_key_state_provider_id', ['providerId'])
export class AdaptiveKeyState {
  @PrimaryColumn({ name: 'key_id', type: 'uuid' })
  keyId: string;

  @Column({ name: 'provider_id', type: 'uuid' })
  providerId: string;

  @Column({ name: 'learned_limit', type: 'integer', nullable: true })
  learnedLimit: number | null;

  @Column({ name: 'concurrent_429_count', type: 'integer', default: 0 })
  concurrent429Count: number;

  @Column({ name: 'rpm_429_count', type: 'integer', default: 0 })
  rpm429Count: number;

  @Column({ name: 'tpm_429_count', type: 'integer', default: 0 })
  tpm429Count: number;

  @Column({ name: 'unknown_429_count', type: 'integer', default: 0 })
  unknown429Count: number;

  @Column({ name: 'last_429_at', type: 'timestamptz', nullable: true })
  last429At: Date | null;

  @Column({ name: 'last_429_type', type: 'varchar', length: 16, nullable: true })
  last429Type: string | null;

  @Column({ name: 'last_concurrency_429_at', type: 'timestamptz', nullable: true })
  lastConcurrency429At: Date | null;

  /** In-flight count of the last concurrency 429 (utilisation increases stop below it). */
  @Column({ type: 'integer', nullable: true })
  boundary: number | null;

  @Column({ name: 'last_probe_at', type: 'timestamptz', nullable: true })
  lastProbeAt: Date | null;

  /** The last 20 adjustments, oldest first. */
  @Column({ type: 'jsonb', default: () => "'[]'::jsonb" })
  adjustments: StoredAdjustment[];

  /** The store's version (ms) of this snapshot; an older snapshot never overwrites a newer one. */
  @Column({ type: 'bigint', default: 0, transformer: bigint })
  version: number;

  @Column({ name: 'updated_at', type: 'timestamptz', default: () => 'now()' })
  updatedAt: Date;
}
