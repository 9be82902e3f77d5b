import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { FastifyRequest } from 'fastify';
import { Repository, type EntityManager } from 'typeorm';
import { AuditEntry } from './audit-entry.entity.js';

export interface AuditRecord {
  /** verb.noun, e.g. `api_key.create`, `provider.update`, `rate_limit.reset`. */
  action: string;
  targetType: string;
  targetId: string | null;
  /** Field → new value (or {from, to}); secret-looking fields are replaced before storing. */
  changes?: Record<string, unknown>;
}

const SECRET_FIELD = /(^|_)(key|secret|password|token|ciphertext)$|^key$/i;

function scrub(value: unknown, depth = 0): unknown {
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([k, v]) => [
      k,
      SECRET_FIELD.test(k) ? '[redacted]' : scrub(v, depth + 1),
    ]),
  );
}

export interface AuditQuery {
  limit: number;
  before?: Date;
  action?: string;
  targetType?: string;
  actorId?: string;
}

/**
 * The one way any module records an admin write: who, what, on which target, from where.
 *
 * The audit row is written with the EntityManager of the transaction that makes the change
 * (`dataSource.transaction(async (m) => { write with m; await audit.record(m, request, ...) })`),
 * so a write and its audit row commit together or not at all. A change that lives outside
 * Postgres (a Redis reset) runs inside that transaction after its audit row: if the row is
 * refused the change is never made, if the change fails the row is rolled back.
 */
@Injectable()
export class AuditService {
  constructor(@InjectRepository(AuditEntry) private readonly entries: Repository<AuditEntry>) {}

  async record(manager: EntityManager, request: FastifyRequest | null, record: AuditRecord): Promise<void> {
    const principal = request?.principal;
    const entry: Partial<AuditEntry> = {
      actorId: principal?.userId ?? null,
      actorRole: principal?.role ?? null,
      action: record.action,
      targetType: record.targetType,
      targetId: record.targetId,
      changes: (scrub(record.changes ?? {}) as Record<string, unknown>) ?? {},
      ip: request?.ip ?? null,
      requestId: request ? String(request.id) : null,
    };
    await manager.save(manager.create(AuditEntry, entry));
  }

  async list(query: AuditQuery): Promise<AuditEntry[]> {
    const qb = this.entries.createQueryBuilder('a').orderBy('a.created_at', 'DESC').limit(query.limit);
    if (query.before) qb.andWhere('a.created_at < :before', { before: query.before });
    if (query.action) qb.andWhere('a.action = :action', { action: query.action });
    if (query.targetType) qb.andWhere('a.target_type = :targetType', { targetType: query.targetType });
    if (query.actorId) qb.andWhere('a.actor_id = :actorId', { actorId: query.actorId });
    return qb.getMany();
  }
}
