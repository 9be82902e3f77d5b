import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, QueryFailedError, Repository, type DeepPartial, type EntityManager } from 'typeorm';
import { withSessionLock } from '../../database/session-lock.js';
import { Provider } from './provider.entity.js';

/**
 * The transaction a write runs in. Services hand it on to whatever must commit with the write (the
 * audit row: `AuditService.record(tx, …)`) without importing TypeORM themselves.
 */
export type TransactionManager = EntityManager;

/** Work that joins a repository's write transaction (the admin write's audit row). */
export type InTransaction = (tx: TransactionManager) => Promise<unknown>;

/** A write refused by a unique index (a provider's name, a key's label within its provider). */
export function isUniqueViolation(err: unknown): boolean {
  return (
    err instanceof QueryFailedError && (err.driverError as { code?: string } | undefined)?.code === '23505'
  );
}

/** SQL for `providers`: reads for routing and the admin API; writes that commit with their audit row. */
@Injectable()
export class ProviderRepository {
  constructor(
    @InjectRepository(Provider) private readonly providers: Repository<Provider>,
    private readonly dataSource: DataSource,
  ) {}

  /** Enabled providers, by name (routing). */
  enabledProviders(): Promise<Provider[]> {
    return this.providers.find({ where: { enabled: true }, order: { name: 'ASC' } });
  }

  /** Every provider, enabled or not, by name. */
  allByName(): Promise<Provider[]> {
    return this.providers.find({ order: { name: 'ASC' } });
  }

  /** Every provider's id and `pricing` (the Spend module's price cache; one query). */
  async pricingOfAll(): Promise<{ id: string; pricing: Provider['pricing'] }[]> {
    return this.providers.find({ select: { id: true, pricing: true } });
  }

  byId(id: string): Promise<Provider | null> {
    return this.providers.findOneBy({ id });
  }

  byNameIgnoringCase(name: string): Promise<Provider | null> {
    return this.providers.createQueryBuilder('p').where('lower(p.name) = lower(:name)', { name }).getOne();
  }

  /** Ids of the providers PROVIDERS_FILE created or took over. */
  async fileProviderIds(): Promise<string[]> {
    const rows = (await this.dataSource.query(`SELECT id FROM providers WHERE source = 'file'`)) as {
      id: string;
    }[];
    return rows.map((r) => r.id);
  }

  /** An unsaved entity from the given fields (columns' defaults as TypeORM applies them). */
  build(fields: DeepPartial<Provider>): Provider {
    return this.providers.create(fields);
  }

  /** Inserts the provider and runs `audit` in the same transaction: both commit or neither. */
  async insertWithAudit(provider: Provider, audit: InTransaction): Promise<void> {
    await this.dataSource.transaction(async (m) => {
      await m.insert(Provider, provider);
      await audit(m);
    });
  }

  /** Applies `patch` and runs `audit` in the same transaction: both commit or neither. */
  async updateWithAudit(id: string, patch: Partial<Provider>, audit: InTransaction): Promise<void> {
    await this.dataSource.transaction(async (m) => {
      await m.update(Provider, { id }, patch);
      await audit(m);
    });
  }

  /** Deletes the provider (its keys go with it: ON DELETE CASCADE) and runs `audit` in the same transaction. */
  async deleteWithAudit(id: string, audit: InTransaction): Promise<void> {
    await this.dataSource.transaction(async (m) => {
      await m.delete(Provider, { id });
      await audit(m);
    });
  }

  /** Runs `work` in a transaction of its own (an audit row that reports work committed before). */
  async inTransaction<T>(work: (tx: TransactionManager) => Promise<T>): Promise<T> {
    return this.dataSource.transaction(work);
  }

  /** Runs `fn` while holding the Postgres session advisory lock `name` (replicas take turns). */
  underSessionLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return withSessionLock(this.dataSource, name, fn);
  }
}
