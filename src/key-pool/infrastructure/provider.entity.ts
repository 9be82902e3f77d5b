import type { ProviderPricing } from '../domain/pricing.js';
import type { ProviderKind } from '../domain/provider-kind.js';
import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';

/** An upstream LLM provider (one OpenAI-compatible base URL). */
@Entity({ name: 'providers' })
export class Provider {
  @PrimaryColumn('uuid')
  id: string;

  /** Unique case-insensitively (IDX_providers_name on lower(name)). */
  @Column({ type: 'varchar', length: 64 })
  name: string;

  /** `openai` (OpenAI-compatible, the default) or `anthropic` (the Messages API): how requests are sent and answers read. */
  @Column({ type: 'varchar', length: 16, default: 'openai' })
  kind: ProviderKind;

  @Column({ name: 'base_url', type: 'varchar', length: 2048 })
  baseUrl: string;

  /** Exact model ids and `*` patterns, used by the relay's routing. */
  @Column({ type: 'jsonb', default: () => "'[]'::jsonb" })
  models: string[];

  /** Provider-wide requests per minute (Adaptive's retreat bucket base rate); null = no provider-wide limit. */
  @Column({ type: 'integer', nullable: true })
  rpm: number | null;

  @Column({ type: 'integer', nullable: true })
  burst: number | null;

  @Column({ name: 'timeout_ms', type: 'integer', default: 60000 })
  timeoutMs: number;

  @Column({ type: 'boolean', default: true })
  enabled: boolean;

  /** Extra headers sent upstream with every request (never credentials: those are upstream keys). */
  @Column({ type: 'jsonb', default: () => "'{}'::jsonb" })
  headers: Record<string, string>;

  /** USD per million tokens per model id or `*` pattern (docs/spend.md); {} = the built-in catalog only. */
  @Column({ type: 'jsonb', default: () => "'{}'::jsonb" })
  pricing: ProviderPricing;

  /** `api` (admin API) or `file` (PROVIDERS_FILE; pruned when removed from the file). */
  @Column({ type: 'varchar', length: 8, default: 'api' })
  source: 'api' | 'file';

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
