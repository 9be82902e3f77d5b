import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, Repository, type DeepPartial, type EntityManager } from 'typeorm';
import { Webhook } from './webhook.entity.js';

/** The transaction an admin write runs in (its audit row joins it). */
export type TransactionManager = EntityManager;
export type InTransaction = (tx: TransactionManager) => Promise<unknown>;

/** SQL for `webhooks`: the admin API's reads and audited writes, and the secret re-seal. */
@Injectable()
export class WebhookRepository {
  constructor(
    @InjectRepository(Webhook) private readonly webhooks: Repository<Webhook>,
    private readonly dataSource: DataSource,
  ) {}

  build(fields: DeepPartial<Webhook>): Webhook {
    return this.webhooks.create(fields);
  }

  all(): Promise<Webhook[]> {
    return this.webhooks.find({ order: { createdAt: 'ASC', id: 'ASC' } });
  }

  byId(id: string): Promise<Webhook | null> {
    return this.webhooks.findOneBy({ id });
  }

  /** Inserts the webhook and runs `audit` in the same transaction: both commit or neither. */
  async insertWithAudit(webhook: Webhook, audit: InTransaction): Promise<void> {
    await this.dataSource.transaction(async (m) => {
      await m.insert(Webhook, webhook);
      await audit(m);
    });
  }

  /** Deletes the webhook (its deliveries go with it: ON DELETE CASCADE) and audits it; false when absent. */
  async deleteWithAudit(id: string, audit: InTransaction): Promise<boolean> {
    return this.dataSource.transaction(async (m) => {
      const r = await m.delete(Webhook, { id });
      if (!r.affected) return false;
      await audit(m);
      return true;
    });
  }

  /** Rows sealed under another key than `currentKeyId` (re-sealed at start after a rotation). */
  sealedUnderOtherKeys(currentKeyId: string): Promise<Webhook[]> {
    return this.webhooks
      .createQueryBuilder('w')
      .where('w.encryption_key_id <> :k', { k: currentKeyId })
      .getMany();
  }

  /** Replaces a row's sealed secret if it is still the one read (a concurrent re-seal wins once). */
  async reseal(id: string, from: string, to: { ciphertext: string; keyId: string }): Promise<void> {
    await this.dataSource.query(
      `UPDATE webhooks SET secret_ciphertext = $1, encryption_key_id = $2 WHERE id = $3 AND secret_ciphertext = $4`,
      [to.ciphertext, to.keyId, id, from],
    );
  }
}
