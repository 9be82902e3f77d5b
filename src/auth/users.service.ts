import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { FastifyRequest } from 'fastify';
import { DataSource, Repository, type EntityManager } from 'typeorm';
import { AuditService } from '../audit/audit.service.js';
import { ApiError } from '../common/api-error.js';
import type { Role } from '../common/principal.js';
import { CredentialCache } from './credential-cache.js';
import { isUuid, uniqueViolation } from './db-errors.js';
import type { JwtIdentity } from './jwt-claims.js';
import { usdToMicros, type BudgetPeriod } from './domain/team-rules.js';
import { grantableRoles } from './roles.js';
import { User } from './user.entity.js';

export interface UserInput {
  email: string;
  name?: string | null;
  role: Role;
  disabled?: boolean;
  jwtSubject?: string | null;
  /** The user's spend budget (docs/spend.md "Budgets"); null = none. */
  budget?: { limitUsd: number; period: BudgetPeriod } | null;
}

export type UserPatch = Partial<UserInput>;

export interface UserChange {
  user: User;
  /** field → {from, to}, for the audit log. */
  changes: Record<string, { from: unknown; to: unknown }>;
  /** Keys whose role was lowered to the user's new role. */
  keysCapped: number;
}

const ADMINS_LOCK = 'floodgate:admins';

/**
 * Users: CRUD for the admin API, JWT provisioning, and the "one enabled admin remains" rule.
 * Every write commits together with its audit row (one transaction) or not at all.
 */
@Injectable()
export class UsersService {
  constructor(
    @InjectRepository(User) private readonly users: Repository<User>,
    private readonly dataSource: DataSource,
    private readonly cache: CredentialCache,
    private readonly audit: AuditService,
  ) {}

  async findById(id: string): Promise<User | null> {
    if (!isUuid(id)) return null;
    return this.users.findOneBy({ id });
  }

  async get(id: string): Promise<User> {
    const user = await this.findById(id);
    if (!user) throw ApiError.notFound('User not found', 'user_not_found', 'id');
    return user;
  }

  async list(query: {
    role?: Role;
    email?: string;
    limit: number;
    offset: number;
  }): Promise<{ users: User[]; hasMore: boolean }> {
    const qb = this.users.createQueryBuilder('u').orderBy('u.created_at', 'ASC').addOrderBy('u.id', 'ASC');
    if (query.role) qb.andWhere('u.role = :role', { role: query.role });
    if (query.email) qb.andWhere('lower(u.email) = lower(:email)', { email: query.email.trim() });
    const rows = await qb
      .offset(query.offset)
      .limit(query.limit + 1)
      .getMany();
    return { users: rows.slice(0, query.limit), hasMore: rows.length > query.limit };
  }

  async create(input: UserInput, request: FastifyRequest | null): Promise<User> {
    try {
      return await this.dataSource.transaction(async (m) => {
        const user = await m.save(
          m.create(User, {
            email: input.email.trim().toLowerCase(),
            name: input.name ?? null,
            role: input.role,
            disabled: input.disabled ?? false,
            jwtSubject: input.jwtSubject ?? null,
            budgetLimitMicros: input.budget ? String(usdToMicros(input.budget.limitUsd)) : null,
            budgetPeriod: input.budget?.period ?? null,
          }),
        );
        await this.audit.record(m, request, {
          action: 'user.create',
          targetType: 'user',
          targetId: user.id,
          changes: {
            email: user.email,
            name: user.name,
            role: user.role,
            disabled: user.disabled,
            jwt_subject: user.jwtSubject,
            budget: input.budget
              ? { limit_micros: usdToMicros(input.budget.limitUsd), period: input.budget.period }
              : null,
          },
        });
        return user;
      });
    } catch (err) {
      throw conflictFor(err) ?? err;
    }
  }

  async update(id: string, patch: UserPatch, request: FastifyRequest | null): Promise<UserChange> {
    const user = await this.get(id);
    const touchesAdmins = patch.role !== undefined || patch.disabled !== undefined;
    let result: UserChange;
    try {
      result = await this.dataSource.transaction(async (m) => {
        if (touchesAdmins) await m.query('SELECT pg_advisory_xact_lock(hashtext($1))', [ADMINS_LOCK]);
        const current = await m.findOne(User, {
          where: { id: user.id },
          lock: { mode: 'pessimistic_write' },
        });
        if (!current) throw ApiError.notFound('User not found', 'user_not_found', 'id');
        const next: Partial<User> = {};
        if (patch.email !== undefined) next.email = patch.email.trim().toLowerCase();
        if (patch.name !== undefined) next.name = patch.name;
        if (patch.role !== undefined) next.role = patch.role;
        if (patch.disabled !== undefined) next.disabled = patch.disabled;
        if (patch.jwtSubject !== undefined) next.jwtSubject = patch.jwtSubject;
        if (patch.budget !== undefined) {
          next.budgetLimitMicros = patch.budget ? String(usdToMicros(patch.budget.limitUsd)) : null;
          next.budgetPeriod = patch.budget?.period ?? null;
        }
        const changes: UserChange['changes'] = {};
        for (const [field, value] of Object.entries(next) as [keyof User, unknown][]) {
          if (current[field] !== value) changes[snake(field)] = { from: current[field], to: value };
        }
        const losesAdmin =
          current.role === 'admin' &&
          !current.disabled &&
          ((next.role ?? 'admin') !== 'admin' || next.disabled === true);
        if (losesAdmin) await this.assertAnotherAdmin(m, current.id);
        if (Object.keys(changes).length === 0) return { user: current, changes, keysCapped: 0 };
        Object.assign(current, next);
        const saved = await m.save(User, current);
        let keysCapped = 0;
        if (changes.role) {
          // A key never outranks its owner: keys above the new role are lowered to it.
          const [, count] = (await m.query(
            `UPDATE api_keys SET role = $2 WHERE user_id = $1 AND revoked_at IS NULL AND NOT (role = ANY($3::varchar[]))`,
            [current.id, current.role, grantableRoles(current.role)],
          )) as [unknown, number];
          keysCapped = count;
        }
        await this.audit.record(m, request, {
          action: 'user.update',
          targetType: 'user',
          targetId: saved.id,
          changes: keysCapped > 0 ? { ...changes, keys_capped: keysCapped } : changes,
        });
        return { user: saved, changes, keysCapped };
      });
    } catch (err) {
      throw conflictFor(err) ?? err;
    }
    if (
      result.changes.role ||
      result.changes.disabled ||
      result.changes.email ||
      result.changes.jwt_subject ||
      result.changes.budget_limit_micros ||
      result.changes.budget_period
    ) {
      await this.cache.invalidate({ kind: 'user', id: result.user.id });
    }
    return result;
  }

  async delete(id: string, request: FastifyRequest | null): Promise<User> {
    const user = await this.get(id);
    await this.dataSource.transaction(async (m) => {
      await m.query('SELECT pg_advisory_xact_lock(hashtext($1))', [ADMINS_LOCK]);
      if (user.role === 'admin' && !user.disabled) await this.assertAnotherAdmin(m, user.id);
      await m.delete(User, { id: user.id }); // api_keys cascade
      await this.audit.record(m, request, {
        action: 'user.delete',
        targetType: 'user',
        targetId: user.id,
        changes: { email: user.email, role: user.role },
      });
    });
    await this.cache.invalidate({ kind: 'user', id: user.id });
    return user;
  }

  private async assertAnotherAdmin(m: EntityManager, exceptId: string): Promise<void> {
    const others = await m
      .createQueryBuilder(User, 'u')
      .where(`u.role = 'admin' AND u.disabled = false AND u.id <> :id`, { id: exceptId })
      .getCount();
    if (others === 0) {
      throw ApiError.conflict(
        'At least one enabled admin must remain: create or enable another admin first',
        null,
        'last_admin',
      );
    }
  }

  /**
   * The user behind a verified token: found by `jwt_subject`, or provisioned from the claims on
   * first use. Concurrent first requests converge on one row (ON CONFLICT). An email that already
   * belongs to another user is not taken over: an admin links accounts explicitly (jwt_subject).
   */
  async resolveJwtSubject(
    identity: JwtIdentity,
    request: Partial<FastifyRequest> | null = null,
  ): Promise<{ user: User; provisioned: boolean }> {
    const existing = await this.users.findOneBy({ jwtSubject: identity.subject });
    if (existing) return { user: existing, provisioned: false };
    // The provisioned user and its `user.provision` audit row (the user as its own actor) commit together.
    const inserted = await this.dataSource.transaction(async (m) => {
      const rows = (await m.query(
        `INSERT INTO users (email, name, role, jwt_subject) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id, email, role`,
        [identity.email, identity.name, identity.role, identity.subject],
      )) as { id: string; email: string; role: Role }[];
      const row = rows[0];
      if (row) {
        const auditRequest = {
          ip: request?.ip,
          id: request?.id,
          principal: { userId: row.id, role: row.role },
        } as unknown as FastifyRequest;
        await this.audit.record(m, auditRequest, {
          action: 'user.provision',
          targetType: 'user',
          targetId: row.id,
          changes: { jwt_subject: identity.subject, email: row.email, role: row.role },
        });
      }
      return rows;
    });
    const user = await this.users.findOneBy(
      inserted[0] ? { id: inserted[0].id } : { jwtSubject: identity.subject },
    );
    if (user) return { user, provisioned: inserted.length > 0 };
    throw ApiError.unauthorized(
      "The token's email belongs to another Floodgate user; an admin can link the accounts by setting that user's jwt_subject",
      'jwt_subject_conflict',
    );
  }
}

function snake(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function conflictFor(err: unknown): ApiError | null {
  const index = uniqueViolation(err);
  if (index === null) return null;
  if (index === 'IDX_users_jwt_subject')
    return ApiError.conflict('Another user already has this jwt_subject', 'jwt_subject');
  return ApiError.conflict('A user with this email already exists', 'email');
}
