import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { FastifyRequest } from 'fastify';
import { DataSource, IsNull, Repository, type FindOptionsWhere } from 'typeorm';
import { AuditService } from '../audit/audit.service.js';
import { ApiError } from '../common/api-error.js';
import { ROLES, type Principal, type Priority, type Role } from '../common/principal.js';
import { ApiKey } from './api-key.entity.js';
import { generateApiKey } from './api-key-format.js';
import { CredentialCache } from './credential-cache.js';
import { isUuid, uniqueViolation } from './db-errors.js';
import { keyTeam, usdToMicros, type BudgetPeriod } from './domain/team-rules.js';
import { priorityWithin, roleWithin } from './roles.js';
import { User } from './user.entity.js';

export interface ApiKeyInput {
  name: string;
  role?: Role;
  expiresAt?: Date | null;
  rpm?: number | null;
  tpm?: number | null;
  allowedModels?: string[] | null;
  maxPriority?: Priority;
  /** undefined: the owner's team; otherwise it must be the owner's team (domain/team-rules keyTeam). */
  teamId?: string | null;
  /** The key's spend budget (docs/spend.md "Budgets"); null/absent = none. */
  budget?: { limitUsd: number; period: BudgetPeriod } | null;
  /** Capture the key's bodies (docs/requests.md); only an admin may turn it on. */
  captureBodies?: boolean;
}

/** A change of a key (PATCH); undefined = unchanged. The key's value, hash, owner and role never change. */
export interface ApiKeyPatch {
  name?: string;
  expiresAt?: Date | null;
  /** null clears both; an object sets the members it names (null clears that one). */
  limits?: { rpm?: number | null; tpm?: number | null } | null;
  allowedModels?: string[] | null;
  maxPriority?: Priority;
  /** Must be the owner's team (domain/team-rules keyTeam), as at creation. */
  teamId?: string | null;
  budget?: { limitUsd: number; period: BudgetPeriod } | null;
  captureBodies?: boolean;
}

/** Which keys a caller may change: `ownerId` only that user's (others answer 404); `teamId` only that team's (403). */
export interface KeyScope {
  ownerId?: string | null;
  teamId?: string | null;
}

export interface CreatedApiKey {
  key: ApiKey;
  /** Shown once in the creation response; never stored, never logged. */
  raw: string;
}

/**
 * Key management (create, list, revoke). Verification, the hot path, is CredentialVerifier's.
 * Rules: a key's role is within its owner's role and the creator's; only admins grant `urgent`;
 * a key creating a key for its own user cannot widen its own limits.
 */
@Injectable()
export class ApiKeysService {
  constructor(
    @InjectRepository(ApiKey) private readonly keys: Repository<ApiKey>,
    private readonly cache: CredentialCache,
    private readonly dataSource: DataSource,
    private readonly audit: AuditService,
  ) {}

  /** Creates the key and its `api_key.create` audit row in one transaction. */
  async create(
    owner: User,
    input: ApiKeyInput,
    actor: Principal,
    request: FastifyRequest | null,
  ): Promise<CreatedApiKey> {
    if (owner.disabled)
      throw ApiError.conflict(
        'The user is disabled: enable them before creating keys',
        null,
        'user_disabled',
      );
    const role = input.role ?? defaultKeyRole(owner.role, actor.role);
    if (!role)
      throw ApiError.forbidden(
        `No role is within both your role (${actor.role}) and the owner's (${owner.role})`,
      );
    if (!roleWithin(role, actor.role)) {
      throw new ApiError(
        403,
        'permission_error',
        'forbidden',
        `A ${actor.role} cannot create a key with role ${role}`,
        'role',
      );
    }
    if (!roleWithin(role, owner.role)) {
      throw ApiError.badRequest(
        `role must be within the owner's role (${owner.role}): one of ${ROLES.filter((r) => roleWithin(r, owner.role)).join(', ')}`,
        'role',
      );
    }
    const maxPriority = input.maxPriority ?? 'high';
    if (maxPriority === 'urgent' && actor.role !== 'admin') {
      throw new ApiError(
        403,
        'permission_error',
        'forbidden',
        'Only admins may grant max_priority urgent',
        'max_priority',
      );
    }
    if (input.captureBodies && actor.role !== 'admin') {
      throw new ApiError(
        403,
        'permission_error',
        'forbidden',
        'Only admins may turn on capture_bodies',
        'capture_bodies',
      );
    }
    const team = keyTeam(
      input.teamId === undefined ? undefined : (input.teamId?.toLowerCase() ?? null),
      owner.teamId,
    );
    if (!team.ok) throw ApiError.badRequest(team.message, 'team_id');
    if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) {
      throw ApiError.badRequest('expires_at must be in the future', 'expires_at');
    }
    const settings = {
      rpm: input.rpm ?? null,
      tpm: input.tpm ?? null,
      allowedModels: input.allowedModels ?? null,
      maxPriority,
    };
    if (actor.apiKey && actor.userId === owner.id) assertNotWider(settings, actor.apiKey);
    const budgetMicros = input.budget ? usdToMicros(input.budget.limitUsd) : null;
    const ownBudget = actor.apiKey?.budget;
    if (ownBudget && actor.userId === owner.id) {
      // a key with a budget cannot mint a key that escapes it
      if (!input.budget || input.budget.period !== ownBudget.period || budgetMicros! > ownBudget.limitMicros)
        throw ApiError.badRequest(
          `A key with a budget can only create keys with a ${ownBudget.period} budget of at most ${ownBudget.limitMicros / 1_000_000} USD`,
          'budget',
        );
    }

    const material = generateApiKey();
    try {
      const key = await this.dataSource.transaction(async (m) => {
        const created = await m.save(
          m.create(ApiKey, {
            userId: owner.id,
            name: input.name,
            keyHash: material.hash,
            prefix: material.prefix,
            last4: material.last4,
            role,
            rpm: settings.rpm,
            tpm: settings.tpm,
            allowedModels: settings.allowedModels,
            maxPriority,
            teamId: team.teamId,
            createdBy: actor.userId,
            expiresAt: input.expiresAt ?? null,
            budgetLimitMicros: budgetMicros === null ? null : String(budgetMicros),
            budgetPeriod: input.budget?.period ?? null,
            captureBodies: input.captureBodies ?? false,
          }),
        );
        await this.audit.record(m, request, {
          action: 'api_key.create',
          targetType: 'api_key',
          targetId: created.id,
          changes: keyAuditFields(created),
        });
        return created;
      });
      return { key, raw: material.raw };
    } catch (err) {
      // A SHA-256 collision of 256 random bits does not happen; anything else is a real error.
      if (uniqueViolation(err) !== null) throw ApiError.conflict('Could not create the key, try again');
      throw err;
    }
  }

  async list(filter: {
    userId?: string;
    teamId?: string;
    includeRevoked: boolean;
    limit: number;
    offset: number;
  }): Promise<{ keys: ApiKey[]; hasMore: boolean }> {
    const where: FindOptionsWhere<ApiKey> = {};
    if (filter.userId) where.userId = filter.userId;
    if (filter.teamId) where.teamId = filter.teamId;
    if (!filter.includeRevoked) where.revokedAt = IsNull();
    const rows = await this.keys.find({
      where,
      order: { createdAt: 'DESC', id: 'ASC' },
      skip: filter.offset,
      take: filter.limit + 1,
    });
    return { keys: rows.slice(0, filter.limit), hasMore: rows.length > filter.limit };
  }

  async findById(id: string): Promise<ApiKey | null> {
    if (!isUuid(id)) return null;
    return this.keys.findOneBy({ id });
  }

  /**
   * Revokes a key; `ownerId` restricts it to that user's keys. Someone else's key answers 404,
   * exactly like a missing one, so key ids do not leak. Idempotent; the revocation and its
   * `api_key.revoke` audit row commit together.
   */
  async revoke(
    id: string,
    ownerId: string | null,
    request: FastifyRequest | null,
    /** A team_admin's revoke: only keys of this team (another team's key answers 403). */
    teamId: string | null = null,
  ): Promise<{ key: ApiKey; alreadyRevoked: boolean }> {
    const key = await this.findById(id);
    if (!key || (ownerId !== null && key.userId !== ownerId))
      throw ApiError.notFound('API key not found', 'api_key_not_found', 'id');
    if (teamId !== null && key.teamId !== teamId)
      throw ApiError.forbidden("A team_admin may revoke only its own team's keys", 'insufficient_permission');
    if (key.revokedAt) return { key, alreadyRevoked: true };
    const revokedNow = await this.dataSource.transaction(async (m) => {
      const result = await m
        .createQueryBuilder()
        .update(ApiKey)
        .set({ revokedAt: () => 'now()' })
        .where('id = :id AND revoked_at IS NULL', { id })
        .execute();
      if (!result.affected) return false;
      await this.audit.record(m, request, {
        action: 'api_key.revoke',
        targetType: 'api_key',
        targetId: key.id,
        changes: { owner_id: key.userId, name: key.name },
      });
      return true;
    });
    if (!revokedNow) return { key: (await this.findById(id)) ?? key, alreadyRevoked: true };
    await this.cache.invalidate({ kind: 'api_key', id });
    const revoked = (await this.findById(id)) ?? key;
    return { key: revoked, alreadyRevoked: false };
  }

  /**
   * Changes a key's settings by the rules of `create` (only admins grant `urgent` or change
   * `capture_bodies`; `team_id` is the owner's team; `expires_at` in the future; a key changing a key
   * of its own user cannot widen the fields it changes beyond its own, budget included). The change
   * and its `api_key.update` audit row (from/to per changed field, never the value or hash) commit
   * together; then the key's cached credentials are dropped here and, through pub/sub, on every
   * other instance, so the new settings apply at once everywhere. A revoked key cannot be changed.
   */
  async update(
    id: string,
    patch: ApiKeyPatch,
    actor: Principal,
    request: FastifyRequest | null,
    scope: KeyScope = {},
  ): Promise<ApiKey> {
    const key = await this.findById(id);
    if (!key || (scope.ownerId != null && key.userId !== scope.ownerId))
      throw ApiError.notFound('API key not found', 'api_key_not_found', 'id');
    if (scope.teamId != null && key.teamId !== scope.teamId)
      throw ApiError.forbidden("A team_admin may change only its own team's keys", 'insufficient_permission');
    if (key.revokedAt)
      throw ApiError.conflict('The key is revoked: a revoked key cannot be changed', null, 'api_key_revoked');
    const deny = (field: string, message: string): never => {
      throw new ApiError(403, 'permission_error', 'forbidden', message, field);
    };
    if (patch.maxPriority === 'urgent' && actor.role !== 'admin')
      deny('max_priority', 'Only admins may grant max_priority urgent');
    if (
      patch.captureBodies !== undefined &&
      patch.captureBodies !== key.captureBodies &&
      actor.role !== 'admin'
    )
      deny('capture_bodies', 'Only admins may change capture_bodies');
    if (patch.expiresAt && patch.expiresAt.getTime() <= Date.now())
      throw ApiError.badRequest('expires_at must be in the future', 'expires_at');
    let teamId: string | null | undefined;
    if (patch.teamId !== undefined) {
      const owner = await this.dataSource.getRepository(User).findOneBy({ id: key.userId });
      const team = keyTeam(patch.teamId?.toLowerCase() ?? null, owner?.teamId ?? null);
      if (!team.ok) throw ApiError.badRequest(team.message, 'team_id');
      teamId = team.teamId;
    }
    const rpm = patch.limits === null ? null : patch.limits?.rpm;
    const tpm = patch.limits === null ? null : patch.limits?.tpm;
    const budgetMicros = patch.budget ? usdToMicros(patch.budget.limitUsd) : null;
    if (actor.apiKey && actor.userId === key.userId) {
      // A key changing a key of its own user: what it changes is held to what it could create.
      assertNotWider(
        { rpm, tpm, allowedModels: patch.allowedModels, maxPriority: patch.maxPriority },
        actor.apiKey,
      );
      const ownBudget = actor.apiKey.budget;
      if (ownBudget && patch.budget !== undefined) {
        if (
          !patch.budget ||
          patch.budget.period !== ownBudget.period ||
          budgetMicros! > ownBudget.limitMicros
        )
          throw ApiError.badRequest(
            `A key with a budget can only give keys a ${ownBudget.period} budget of at most ${ownBudget.limitMicros / 1_000_000} USD`,
            'budget',
          );
      }
    }

    const result = await this.dataSource.transaction(async (m) => {
      const current = await m.findOne(ApiKey, { where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!current) throw ApiError.notFound('API key not found', 'api_key_not_found', 'id');
      if (current.revokedAt)
        throw ApiError.conflict(
          'The key is revoked: a revoked key cannot be changed',
          null,
          'api_key_revoked',
        );
      const next: Partial<ApiKey> = {};
      if (patch.name !== undefined) next.name = patch.name;
      if (patch.expiresAt !== undefined) next.expiresAt = patch.expiresAt;
      if (rpm !== undefined) next.rpm = rpm;
      if (tpm !== undefined) next.tpm = tpm;
      if (patch.allowedModels !== undefined) next.allowedModels = patch.allowedModels;
      if (patch.maxPriority !== undefined) next.maxPriority = patch.maxPriority;
      if (teamId !== undefined) next.teamId = teamId;
      if (patch.budget !== undefined) {
        next.budgetLimitMicros = budgetMicros === null ? null : String(budgetMicros);
        next.budgetPeriod = patch.budget?.period ?? null;
      }
      if (patch.captureBodies !== undefined) next.captureBodies = patch.captureBodies;
      const before = keyAuditFields(current);
      const after = keyAuditFields(Object.assign(m.create(ApiKey, { ...current }), next));
      const changes: Record<string, { from: unknown; to: unknown }> = {};
      for (const field of Object.keys(after)) {
        if (JSON.stringify(before[field]) !== JSON.stringify(after[field]))
          changes[field] = { from: before[field], to: after[field] };
      }
      if (Object.keys(changes).length === 0) return { key: current, changed: false };
      // Only the settings named above are written: the hash, prefix, owner and role are never touched.
      await m.update(ApiKey, { id }, next);
      await this.audit.record(m, request, {
        action: 'api_key.update',
        targetType: 'api_key',
        targetId: id,
        changes,
      });
      return { key: (await m.findOneBy(ApiKey, { id }))!, changed: true };
    });
    if (result.changed) await this.cache.invalidate({ kind: 'api_key', id });
    return result.key;
  }
}

/** The highest role within both the owner's role and the creator's (null when none is). */
export function defaultKeyRole(ownerRole: Role, actorRole: Role): Role | null {
  return ROLES.find((r) => roleWithin(r, ownerRole) && roleWithin(r, actorRole)) ?? null;
}

/** A key minting a key for its own user may narrow, never widen, its own settings. */
function assertNotWider(
  /** undefined: not being set (a PATCH that leaves the field alone). */
  wanted: {
    rpm?: number | null;
    tpm?: number | null;
    allowedModels?: string[] | null;
    maxPriority?: Priority;
  },
  own: NonNullable<Principal['apiKey']>,
): void {
  const deny = (field: string, message: string): never => {
    throw new ApiError(403, 'permission_error', 'forbidden', message, field);
  };
  if (wanted.maxPriority !== undefined && !priorityWithin(wanted.maxPriority, own.maxPriority)) {
    deny('max_priority', `A key cannot grant a higher max_priority than its own (${own.maxPriority})`);
  }
  if (wanted.rpm !== undefined && own.rpm !== null && (wanted.rpm === null || wanted.rpm > own.rpm)) {
    deny('limits.rpm', `A key cannot create a key without an rpm limit at most its own (${own.rpm})`);
  }
  if (wanted.tpm !== undefined && own.tpm !== null && (wanted.tpm === null || wanted.tpm > own.tpm)) {
    deny('limits.tpm', `A key cannot create a key without a tpm limit at most its own (${own.tpm})`);
  }
  if (
    wanted.allowedModels !== undefined &&
    own.allowedModels !== null &&
    (wanted.allowedModels === null || wanted.allowedModels.some((m) => !own.allowedModels!.includes(m)))
  ) {
    deny('allowed_models', 'A key cannot allow models outside its own allowed_models');
  }
}

/** What the audit log records about a key: its settings, never its value or hash. */
function keyAuditFields(key: ApiKey): Record<string, unknown> {
  return {
    name: key.name,
    owner_id: key.userId,
    role: key.role,
    prefix: key.prefix,
    limits: { rpm: key.rpm, tpm: key.tpm },
    allowed_models: key.allowedModels,
    max_priority: key.maxPriority,
    team_id: key.teamId,
    expires_at: key.expiresAt?.toISOString() ?? null,
    budget:
      key.budgetLimitMicros !== null && key.budgetPeriod !== null
        ? { limit_micros: Number(key.budgetLimitMicros), period: key.budgetPeriod }
        : null,
    capture_bodies: key.captureBodies ?? false,
  };
}
