import { Column, CreateDateColumn, Entity, Index, PrimaryColumn, UpdateDateColumn } from 'typeorm';

/** A target as stored in `routes.targets` (snake_case jsonb, like the API). */
export interface StoredTarget {
  provider_id: string;
  model: string;
  weight: number;
  tier: number;
  timeouts: {
    connect_ms: number | null;
    first_byte_ms: number | null;
    total_ms: number | null;
    stream_total_ms: number | null;
  } | null;
  breaker: 'auto' | 'open' | 'closed';
}

/** A route: the model name clients send → targets in tiers with weights (see docs/routes.md). */
@Entity({ name: 'routes' })
export class Route {
  @PrimaryColumn('uuid')
  id: string;

  /** The alias clients send; unique (IDX_routes_model). */
  @Index('IDX_routes_model', { unique: true })
  @Column({ type: 'varchar', length: 255 })
  model: string;

  @Column({ type: 'jsonb', default: () => "'[]'::jsonb" })
  targets: StoredTarget[];

  @Column({ name: 'max_attempts', type: 'smallint', default: 3 })
  maxAttempts: number;

  @Column({ type: 'boolean', default: true })
  enabled: boolean;

  /** Store this route's request and response bodies (docs/requests.md "Body capture"). */
  @Column({ name: 'capture_bodies', type: 'boolean', default: false })
  captureBodies: boolean;

  /** `api` (admin API) or `file` (PROVIDERS_FILE; pruned when removed from the file). */
  @Column({ type: 'varchar', length: 8, default: 'api' })
  source: 'api' | 'file';

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
