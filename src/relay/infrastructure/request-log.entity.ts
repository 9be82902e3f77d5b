import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** One upstream attempt as `request_log.attempt_log` stores it (AttemptRecord, snake_case keys). */
export interface StoredAttempt {
  attempt: number;
  provider_id: string;
  model: string;
  key_id: string | null;
  status: number | null;
  outcome: string;
  ms: number;
}

@Entity({ name: 'request_log' })
@Index('IDX_request_log_created_at_id', ['createdAt', 'id'])
export class RequestLogRow {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @Column({ name: 'request_id', type: 'varchar', length: 128 })
  requestId: string;

  @Column({ name: 'api_key_id', type: 'uuid', nullable: true })
  apiKeyId: string | null;

  @Column({ name: 'user_id', type: 'uuid', nullable: true })
  userId: string | null;

  @Column({ name: 'provider_id', type: 'uuid', nullable: true })
  providerId: string | null;

  @Column({ name: 'provider_key_id', type: 'uuid', nullable: true })
  providerKeyId: string | null;

  @Column({ type: 'varchar', length: 32 })
  endpoint: string;

  @Column({ type: 'varchar', length: 255, nullable: true })
  model: string | null;

  @Column({ type: 'varchar', length: 8 })
  priority: string;

  @Column({ type: 'integer' })
  status: number;

  @Column({ name: 'error_code', type: 'varchar', length: 64, nullable: true })
  errorCode: string | null;

  @Column({ name: 'prompt_tokens', type: 'integer', default: 0 })
  promptTokens: number;

  @Column({ name: 'completion_tokens', type: 'integer', default: 0 })
  completionTokens: number;

  @Column({ name: 'queue_ms', type: 'integer', default: 0 })
  queueMs: number;

  @Column({ name: 'upstream_ms', type: 'integer', default: 0 })
  upstreamMs: number;

  @Column({ name: 'overhead_ms', type: 'integer', default: 0 })
  overheadMs: number;

  @Column({ type: 'smallint', default: 1 })
  attempts: number;

  @Column({ type: 'boolean', default: false })
  stream: boolean;

  /** The team the request was charged to (the key's, else the user's); null: none. */
  @Column({ name: 'team_id', type: 'uuid', nullable: true })
  teamId: string | null;

  /** The model the provider served (a route target's model); null: the requested `model`. */
  @Column({ name: 'served_model', type: 'varchar', length: 255, nullable: true })
  servedModel: string | null;

  /** The route that served the request; null without a route. */
  @Column({ name: 'route_id', type: 'uuid', nullable: true })
  routeId: string | null;

  /**
   * The request's cost in integer micro-dollars (bigint: TypeORM reads it as a string); null when it
   * reached no provider or no price was known for its model (docs/spend.md).
   */
  @Column({ name: 'cost_micro_usd', type: 'bigint', nullable: true })
  costMicroUsd: string | null;

  /** Every upstream attempt, oldest first; null when none was recorded. */
  @Column({ name: 'attempt_log', type: 'jsonb', nullable: true })
  attemptLog: StoredAttempt[] | null;
}
