import { Column, CreateDateColumn, Entity, Index, PrimaryColumn, UpdateDateColumn } from 'typeorm';

/**
 * An upstream API key of a provider. The value is stored only as AES-256-GCM ciphertext
 * (key-cipher.ts) with the id of the ENCRYPTION_KEYS entry that sealed it.
 *
 * State is derived, never stored as one flag: disabled (enabled = false, an admin's decision) →
 * broken (no configured key decrypts it) → invalid (upstream said 401/403; an admin re-enables) →
 * cooling (cooldown_until in the future; ends by itself) → active.
 */
@Entity({ name: 'provider_keys' })
@Index('IDX_provider_keys_provider_id', ['providerId'])
@Index('IDX_provider_keys_encryption_key_id', ['encryptionKeyId'])
export class ProviderKey {
  @PrimaryColumn('uuid')
  id: string;

  @Column({ name: 'provider_id', type: 'uuid' })
  providerId: string;

  @Column({ type: 'varchar', length: 128 })
  label: string;

  @Column({ type: 'text', select: true })
  ciphertext: string;

  /** The ENCRYPTION_KEYS id the ciphertext is sealed under. */
  @Column({ name: 'key_id', type: 'varchar', length: 32 })
  encryptionKeyId: string;

  /** `sk-…abcd`, computed at write time so even a broken key can be recognised. */
  @Column({ type: 'varchar', length: 32 })
  masked: string;

  @Column({ type: 'integer', default: 1 })
  priority: number;

  @Column({ name: 'max_rpm', type: 'integer', nullable: true })
  maxRpm: number | null;

  @Column({ name: 'max_tpm', type: 'integer', nullable: true })
  maxTpm: number | null;

  /** null = adaptive (Adaptive learns the limit), a number = fixed. */
  @Column({ name: 'max_concurrent', type: 'integer', nullable: true })
  maxConcurrent: number | null;

  @Column({ type: 'boolean', default: true })
  enabled: boolean;

  @Column({ name: 'broken_at', type: 'timestamptz', nullable: true })
  brokenAt: Date | null;

  @Column({ name: 'invalid_at', type: 'timestamptz', nullable: true })
  invalidAt: Date | null;

  @Column({ name: 'cooldown_until', type: 'timestamptz', nullable: true })
  cooldownUntil: Date | null;

  @Column({ name: 'last_429_at', type: 'timestamptz', nullable: true })
  last429At: Date | null;

  @Column({
    name: 'total_requests',
    type: 'bigint',
    default: 0,
    transformer: { to: (v: number) => v, from: (v: string | null) => Number(v ?? 0) },
  })
  totalRequests: number;

  @Column({
    name: 'total_tokens',
    type: 'bigint',
    default: 0,
    transformer: { to: (v: number) => v, from: (v: string | null) => Number(v ?? 0) },
  })
  totalTokens: number;

  @Column({ name: 'last_used_at', type: 'timestamptz', nullable: true })
  lastUsedAt: Date | null;

  @Column({ type: 'varchar', length: 8, default: 'api' })
  source: 'api' | 'file';

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}

export type ProviderKeyState = 'active' | 'cooling' | 'disabled' | 'broken' | 'invalid';

export function keyState(
  key: Pick<ProviderKey, 'enabled' | 'brokenAt' | 'invalidAt' | 'cooldownUntil'>,
  nowMs = Date.now(),
): ProviderKeyState {
  if (!key.enabled) return 'disabled';
  if (key.brokenAt) return 'broken';
  if (key.invalidAt) return 'invalid';
  if (key.cooldownUntil && key.cooldownUntil.getTime() > nowMs) return 'cooling';
  return 'active';
}
