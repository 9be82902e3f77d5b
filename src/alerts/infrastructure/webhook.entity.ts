import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';

/** A webhook: where events go, which ones, and its signing secret sealed at rest (docs/alerts.md). */
@Entity({ name: 'webhooks' })
export class Webhook {
  @PrimaryColumn('uuid')
  id: string;

  @Column({ type: 'varchar', length: 2048 })
  url: string;

  /** Event names or `*`. */
  @Column({ type: 'jsonb', default: () => "'[]'::jsonb" })
  events: string[];

  /** The signing secret, AES-256-GCM (`v1.…`), AAD `webhook:<id>`. */
  @Column({ name: 'secret_ciphertext', type: 'text' })
  secretCiphertext: string;

  /** The ENCRYPTION_KEYS entry that sealed it. */
  @Column({ name: 'encryption_key_id', type: 'varchar', length: 64 })
  encryptionKeyId: string;

  /** `whsec_…abcd`: enough to recognise the secret, never to use it. */
  @Column({ name: 'secret_hint', type: 'varchar', length: 16 })
  secretHint: string;

  @Column({ type: 'boolean', default: true })
  enabled: boolean;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
