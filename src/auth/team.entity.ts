import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';
import type { Priority } from '../common/principal.js';
import type { BudgetPeriod } from './domain/team-rules.js';

/** A team of users (docs/auth.md "Teams"). Schema: migrations/1763776000000-Teams.ts. */
@Entity({ name: 'teams' })
export class Team {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  /** Unique case-insensitively (index on lower(name)). */
  @Column({ type: 'varchar', length: 100 })
  name: string;

  /** Fair-share weight (1..1000): stored and shown now; the queue uses it later (issue 16). */
  @Column({ type: 'integer', default: 1 })
  weight: number;

  @Column({ type: 'integer', nullable: true })
  rpm: number | null;

  @Column({ type: 'integer', nullable: true })
  tpm: number | null;

  /** Micro-dollars (bigint: pg returns a string); enforced (docs/spend.md "Budgets"). */
  @Column({ name: 'budget_limit_micros', type: 'bigint', nullable: true })
  budgetLimitMicros: string | null;

  @Column({ name: 'budget_period', type: 'varchar', length: 8, nullable: true })
  budgetPeriod: BudgetPeriod | null;

  @Column({ name: 'allowed_models', type: 'jsonb', nullable: true })
  allowedModels: string[] | null;

  @Column({ name: 'max_priority', type: 'varchar', length: 8, default: 'urgent' })
  maxPriority: Priority;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
