import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, QueryFailedError, Repository, type EntityManager } from 'typeorm';
import { withSessionLock } from '../../database/session-lock.js';
import type { RouteDef, RouteTarget } from '../routing.types.js';
import { Route, type StoredTarget } from './route.entity.js';

/** The transaction a write runs in (the audit row joins it: `AuditService.record(tx, …)`). */
export type TransactionManager = EntityManager;
export type InTransaction = (tx: TransactionManager) => Promise<unknown>;

/** A write refused by a unique index (a route's model). */
export function isUniqueViolation(err: unknown): boolean {
  return (
    err instanceof QueryFailedError && (err.driverError as { code?: string } | undefined)?.code === '23505'
  );
}

/** The fields a write sets (the rest are the row's own: id, timestamps). */
export interface RouteFields {
  model: string;
  targets: RouteTarget[];
  maxAttempts: number;
  enabled: boolean;
  source: 'api' | 'file';
  /** absent: off on insert, unchanged on update. */
  captureBodies?: boolean;
}

/** A stored row with its `source` (PROVIDERS_FILE prunes only its own). */
export interface StoredRoute extends RouteDef {
  source: 'api' | 'file';
}

export function toStoredTarget(t: RouteTarget): StoredTarget {
  return {
    provider_id: t.providerId,
    model: t.model,
    weight: t.weight,
    tier: t.tier,
    timeouts: t.timeouts
      ? {
          connect_ms: t.timeouts.connectMs,
          first_byte_ms: t.timeouts.firstByteMs,
          total_ms: t.timeouts.totalMs,
          stream_total_ms: t.timeouts.streamTotalMs,
        }
      : null,
    breaker: t.breaker,
  };
}

function fromStoredTarget(t: StoredTarget): RouteTarget {
  return {
    providerId: t.provider_id,
    model: t.model,
    weight: t.weight ?? 1,
    tier: t.tier ?? 1,
    timeouts: t.timeouts
      ? {
          connectMs: t.timeouts.connect_ms ?? null,
          firstByteMs: t.timeouts.first_byte_ms ?? null,
          totalMs: t.timeouts.total_ms ?? null,
          streamTotalMs: t.timeouts.stream_total_ms ?? null,
        }
      : null,
    breaker: t.breaker ?? 'auto',
  };
}

function toDef(r: Route): StoredRoute {
  return {
    id: r.id,
    model: r.model,
    targets: (r.targets ?? []).map(fromStoredTarget),
    maxAttempts: r.maxAttempts,
    enabled: r.enabled,
    captureBodies: r.captureBodies ?? false,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    source: r.source,
  };
}

/** SQL for `routes`: reads for the cache and the admin API; writes that commit with their audit row. */
@Injectable()
export class RouteRepository {
  constructor(
    @InjectRepository(Route) private readonly routes: Repository<Route>,
    private readonly dataSource: DataSource,
  ) {}

  async enabledRoutes(): Promise<StoredRoute[]> {
    return (await this.routes.find({ where: { enabled: true }, order: { model: 'ASC' } })).map(toDef);
  }

  async all(): Promise<StoredRoute[]> {
    return (await this.routes.find({ order: { model: 'ASC' } })).map(toDef);
  }

  async byId(id: string): Promise<StoredRoute | null> {
    const r = await this.routes.findOneBy({ id });
    return r ? toDef(r) : null;
  }

  async byModel(model: string): Promise<StoredRoute | null> {
    const r = await this.routes.findOneBy({ model });
    return r ? toDef(r) : null;
  }

  /** Ids of the routes PROVIDERS_FILE created or took over. */
  async fileRouteIds(): Promise<string[]> {
    const rows = await this.routes.find({ select: { id: true }, where: { source: 'file' } });
    return rows.map((r) => r.id);
  }

  /** Inserts the route and runs `audit` in the same transaction: both commit or neither. */
  async insertWithAudit(id: string, fields: RouteFields, audit: InTransaction): Promise<void> {
    await this.dataSource.transaction(async (m) => {
      await m.insert(Route, {
        id,
        model: fields.model,
        targets: fields.targets.map(toStoredTarget),
        maxAttempts: fields.maxAttempts,
        enabled: fields.enabled,
        source: fields.source,
        captureBodies: fields.captureBodies ?? false,
      });
      await audit(m);
    });
  }

  /** Applies the given fields and runs `audit` in the same transaction: both commit or neither. */
  async updateWithAudit(id: string, fields: Partial<RouteFields>, audit: InTransaction): Promise<void> {
    const patch: Partial<Route> = {};
    if (fields.model !== undefined) patch.model = fields.model;
    if (fields.targets !== undefined) patch.targets = fields.targets.map(toStoredTarget);
    if (fields.maxAttempts !== undefined) patch.maxAttempts = fields.maxAttempts;
    if (fields.enabled !== undefined) patch.enabled = fields.enabled;
    if (fields.source !== undefined) patch.source = fields.source;
    if (fields.captureBodies !== undefined) patch.captureBodies = fields.captureBodies;
    await this.dataSource.transaction(async (m) => {
      // jsonb through the query builder: TypeORM's update() would treat an array value as a list.
      await m
        .createQueryBuilder()
        .update(Route)
        .set(patch as never)
        .where('id = :id', { id })
        .execute();
      await audit(m);
    });
  }

  /** Deletes the route and runs `audit` in the same transaction. */
  async deleteWithAudit(id: string, audit: InTransaction): Promise<void> {
    await this.dataSource.transaction(async (m) => {
      await m.delete(Route, { id });
      await audit(m);
    });
  }

  /** Runs `fn` while holding the Postgres session advisory lock `name` (replicas take turns). */
  underSessionLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return withSessionLock(this.dataSource, name, fn);
  }
}
