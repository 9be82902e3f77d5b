import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import type { Priority, Role } from '../common/principal.js';
import type { BudgetPeriod } from './domain/team-rules.js';

/** A client API key. Only its SHA-256 hash is stored; prefix and last4 are for display. */
@Entity({ name: 'api_keys' })
@Index('IDX_api_keys_hash', ['keyHash'], { unique: true })
@Index('IDX_api_keys_user_id_created_at', ['userId', 'createdAt'])
export class ApiKey {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ name: 'user_id', type: 'uuid' })
  userId: string;

  @Column({ type: 'varchar', length: 100 })
  name: string;

  /** Hex SHA-256 of the raw key. Never selected by the API layer. */
  @Column({ name: 'key_hash', type: 'char', length: 64, select: false })
  keyHash: string;

  /** First 8 characters (`fg_` + 5). */
  @Column({ type: 'varchar', length: 8 })
  prefix: string;

  @Column({ type: 'varchar', length: 4 })
  last4: string;

  /** Never above the owner's role (see roles.ts). */
  @Column({ type: 'varchar', length: 16 })
  role: Role;

  @Column({ type: 'integer', nullable: true })
  rpm: number | null;

  @Column({ type: 'integer', nullable: true })
  tpm: number | null;

  @Column({ name: 'allowed_models', type: 'jsonb', nullable: true })
  allowedModels: string[] | null;

  @Column({ name: 'max_priority', type: 'varchar', length: 8, default: 'high' })
  maxPriority: Priority;

  /** The key's spend budget (docs/spend.md "Budgets"): µ$ per period; both null = none. */
  @Column({ name: 'budget_limit_micros', type: 'bigint', nullable: true })
  budgetLimitMicros: string | null;

  @Column({ name: 'budget_period', type: 'varchar', length: 8, nullable: true })
  budgetPeriod: BudgetPeriod | null;

  /** The owner's team, kept equal to it (set when the owner joins a team, cleared when they leave). */
  /** Store this key's request and response bodies (docs/requests.md "Body capture"). */
  @Column({ name: 'capture_bodies', type: 'boolean', default: false })
  captureBodies: boolean;

  @Column({ name: 'team_id', type: 'uuid', nullable: true })
  teamId: string | null;

  /** Who created the key (the owner, or an admin creating it for them). */
  @Column({ name: 'created_by', type: 'uuid', nullable: true })
  createdBy: string | null;

  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true })
  expiresAt: Date | null;

  @Column({ name: 'revoked_at', type: 'timestamptz', nullable: true })
  revokedAt: Date | null;

  /** Batched (UsageRecorder): accurate to a few seconds. */
  @Column({ name: 'last_used_at', type: 'timestamptz', nullable: true })
  lastUsedAt: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
