import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** Usage of one upstream key in one UTC minute, flushed in batches by KeyUsageRecorder. */
@Entity({ name: 'key_usage_minutes' })
@Index('IDX_key_usage_minutes_minute', ['minute'])
export class KeyUsageMinute {
  @PrimaryColumn({ name: 'key_id', type: 'uuid' })
  keyId: string;

  @PrimaryColumn({ type: 'timestamptz' })
  minute: Date;

  @Column({ type: 'integer', default: 0 })
  requests: number;

  @Column({
    type: 'bigint',
    default: 0,
    transformer: { to: (v: number) => v, from: (v: string | null) => Number(v ?? 0) },
  })
  tokens: number;

  @Column({ name: 'rate_limited', type: 'integer', default: 0 })
  rateLimited: number;

  @Column({ type: 'integer', default: 0 })
  errors: number;
}
