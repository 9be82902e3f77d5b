import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';
import type { Role } from '../common/principal.js';
import type { BudgetPeriod, TeamRole } from './domain/team-rules.js';

/** A person or service that owns API keys. Schema: migrations/1763770000000-Auth.ts. */
@Entity({ name: 'users' })
@Index('IDX_users_jwt_subject', ['jwtSubject'], { unique: true })
export class User {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  /** Stored lower-case; unique case-insensitively (index on lower(email)). Null only for JWT users without an email claim. */
  @Column({ type: 'varchar', length: 320, nullable: true })
  email: string | null;

  @Column({ type: 'varchar', length: 200, nullable: true })
  name: string | null;

  @Column({ type: 'varchar', length: 16 })
  role: Role;

  @Column({ type: 'boolean', default: false })
  disabled: boolean;

  /** The `sub` claim of this user's JWTs (set when provisioned from a token, or by an admin to link one). */
  @Column({ name: 'jwt_subject', type: 'varchar', length: 255, nullable: true })
  jwtSubject: string | null;

  /** The one team the user belongs to (null: none); set through the team's members API only. */
  @Column({ name: 'team_id', type: 'uuid', nullable: true })
  teamId: string | null;

  /** Set exactly when teamId is. */
  @Column({ name: 'team_role', type: 'varchar', length: 16, nullable: true })
  teamRole: TeamRole | null;

  /** The user's spend budget, shared by all their keys (docs/spend.md "Budgets"); both null = none. */
  @Column({ name: 'budget_limit_micros', type: 'bigint', nullable: true })
  budgetLimitMicros: string | null;

  @Column({ name: 'budget_period', type: 'varchar', length: 8, nullable: true })
  budgetPeriod: BudgetPeriod | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;

  /** Batched (UsageRecorder): accurate to a few seconds. */
  @Column({ name: 'last_seen_at', type: 'timestamptz', nullable: true })
  lastSeenAt: Date | null;
}
