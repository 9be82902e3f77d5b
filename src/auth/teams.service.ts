import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { FastifyRequest } from 'fastify';
import { DataSource, Repository } from 'typeorm';
import { AuditService } from '../audit/audit.service.js';
import { ApiError } from '../common/api-error.js';
import { callerCan, type Action, type Resource } from '../common/permissions.js';
import type { Principal, Priority, Role } from '../common/principal.js';
import { CredentialCache } from './credential-cache.js';
import { isUuid, uniqueViolation } from './db-errors.js';
import { usdToMicros, type BudgetPeriod, type TeamRole } from './domain/team-rules.js';
import { roleWithin } from './roles.js';
import { Team } from './team.entity.js';
import { User } from './user.entity.js';

export interface TeamInput {
  name: string;
  weight?: number;
  /** undefined: unchanged (update) / none (create); null: none. */
  limits?: { rpm?: number | null; tpm?: number | null } | null;
  budget?: { limitUsd: number; period: BudgetPeriod } | null;
  allowedModels?: string[] | null;
  maxPriority?: Priority;
}

export type TeamPatch = Partial<TeamInput>;

/**
 * Teams and their members (docs/auth.md "Teams"). Every write commits with its audit row. A team's
 * settings and memberships are part of cached principals (limits, folded allowed models and ceiling,
 * team role): every change invalidates them on every instance (CredentialCache, `team` / `user`).
 *
 * Rules: a user is in at most one team; their API keys always carry that team (set when they join,
 * cleared when they leave or the team is deleted — deleting detaches, it never deletes users or keys).
 */
@Injectable()
export class TeamsService {
  constructor(
    @InjectRepository(Team) private readonly teams: Repository<Team>,
    @InjectRepository(User) private readonly users: Repository<User>,
    private readonly dataSource: DataSource,
    private readonly cache: CredentialCache,
    private readonly audit: AuditService,
  ) {}

  /**
   * 403 unless the caller may act on this team: `any` scope (admin), or its own team's team_admin.
   * A team_admin asking about another team is refused, whether that team exists or not.
   */
  assertTeamScope(actor: Principal, teamId: string, resource: Resource, action: Action): void {
    if (callerCan(actor, resource, action, 'any')) return;
    if (actor.team?.role === 'team_admin' && actor.team.id === teamId.toLowerCase()) return;
    throw ApiError.forbidden(
      `A team_admin may ${action} ${resource} of its own team only`,
      'insufficient_permission',
    );
  }

  async findById(id: string): Promise<Team | null> {
    if (!isUuid(id)) return null;
    return this.teams.findOneBy({ id });
  }

  async get(id: string): Promise<Team> {
    const team = await this.findById(id);
    if (!team) throw ApiError.notFound('Team not found', 'team_not_found', 'id');
    return team;
  }

  async list(query: { limit: number; offset: number }): Promise<{ teams: Team[]; hasMore: boolean }> {
    const rows = await this.teams.find({
      order: { createdAt: 'ASC', id: 'ASC' },
      skip: query.offset,
      take: query.limit + 1,
    });
    return { teams: rows.slice(0, query.limit), hasMore: rows.length > query.limit };
  }

  async memberCounts(ids: string[]): Promise<Map<string, number>> {
    if (ids.length === 0) return new Map();
    const rows = (await this.dataSource.query(
      `SELECT team_id, count(*)::int AS n FROM users WHERE team_id = ANY($1::uuid[]) GROUP BY team_id`,
      [ids],
    )) as { team_id: string; n: number }[];
    return new Map(rows.map((r) => [r.team_id, r.n]));
  }

  async members(teamId: string): Promise<User[]> {
    return this.users.find({ where: { teamId }, order: { createdAt: 'ASC', id: 'ASC' } });
  }

  async create(input: TeamInput, request: FastifyRequest | null): Promise<Team> {
    try {
      return await this.dataSource.transaction(async (m) => {
        const team = await m.save(
          m.create(Team, {
            name: input.name,
            weight: input.weight ?? 1,
            rpm: input.limits?.rpm ?? null,
            tpm: input.limits?.tpm ?? null,
            budgetLimitMicros: input.budget ? String(usdToMicros(input.budget.limitUsd)) : null,
            budgetPeriod: input.budget?.period ?? null,
            allowedModels: input.allowedModels ?? null,
            maxPriority: input.maxPriority ?? 'urgent',
          }),
        );
        await this.audit.record(m, request, {
          action: 'team.create',
          targetType: 'team',
          targetId: team.id,
          changes: teamAuditFields(team),
        });
        return team;
      });
    } catch (err) {
      throw conflictFor(err) ?? err;
    }
  }

  async update(id: string, patch: TeamPatch, request: FastifyRequest | null): Promise<Team> {
    await this.get(id);
    let changed = false;
    let saved: Team;
    try {
      saved = await this.dataSource.transaction(async (m) => {
        const current = await m.findOne(Team, { where: { id }, lock: { mode: 'pessimistic_write' } });
        if (!current) throw ApiError.notFound('Team not found', 'team_not_found', 'id');
        const before = teamAuditFields(current);
        if (patch.name !== undefined) current.name = patch.name;
        if (patch.weight !== undefined) current.weight = patch.weight;
        if (patch.limits !== undefined) {
          // null clears both; an object sets the fields it names (null clears that one).
          if (patch.limits === null) {
            current.rpm = null;
            current.tpm = null;
          } else {
            if (patch.limits.rpm !== undefined) current.rpm = patch.limits.rpm;
            if (patch.limits.tpm !== undefined) current.tpm = patch.limits.tpm;
          }
        }
        if (patch.budget !== undefined) {
          current.budgetLimitMicros = patch.budget ? String(usdToMicros(patch.budget.limitUsd)) : null;
          current.budgetPeriod = patch.budget?.period ?? null;
        }
        if (patch.allowedModels !== undefined) current.allowedModels = patch.allowedModels;
        if (patch.maxPriority !== undefined) current.maxPriority = patch.maxPriority;
        const after = teamAuditFields(current);
        const changes: Record<string, { from: unknown; to: unknown }> = {};
        for (const field of Object.keys(after)) {
          if (JSON.stringify(before[field]) !== JSON.stringify(after[field]))
            changes[field] = { from: before[field], to: after[field] };
        }
        if (Object.keys(changes).length === 0) return current;
        changed = true;
        const row = await m.save(Team, current);
        await this.audit.record(m, request, {
          action: 'team.update',
          targetType: 'team',
          targetId: row.id,
          changes,
        });
        return row;
      });
    } catch (err) {
      throw conflictFor(err) ?? err;
    }
    if (changed) await this.cache.invalidate({ kind: 'team', id });
    return saved;
  }

  /**
   * Deletes the team and detaches (never deletes) its members and their keys: they stop counting
   * against the team's limits at once (every instance). The audit row lists who was detached.
   */
  async delete(id: string, request: FastifyRequest | null): Promise<void> {
    const team = await this.get(id);
    await this.dataSource.transaction(async (m) => {
      const members = (await m.query(`SELECT id FROM users WHERE team_id = $1 ORDER BY id`, [id])) as {
        id: string;
      }[];
      const [, keys] = (await m.query(`UPDATE api_keys SET team_id = NULL WHERE team_id = $1`, [id])) as [
        unknown,
        number,
      ];
      await m.query(`UPDATE users SET team_id = NULL, team_role = NULL WHERE team_id = $1`, [id]);
      await m.delete(Team, { id });
      await this.audit.record(m, request, {
        action: 'team.delete',
        targetType: 'team',
        targetId: id,
        changes: {
          name: team.name,
          detached_members: members.map((r) => r.id),
          detached_keys: keys,
        },
      });
    });
    await this.cache.invalidate({ kind: 'team', id });
  }

  /**
   * Adds a user to the team with `role` (default member), or changes their role in it. A user in
   * another team is a 409 (remove them there first). Their API keys join the team with them.
   * Returns whether the membership is new (201) or was updated / unchanged (200).
   */
  async addMember(
    teamId: string,
    userId: string,
    role: TeamRole | undefined,
    request: FastifyRequest | null,
    /** Set for a team_admin acting on its own team: it may add only users within its own role. */
    teamAdminRole: Role | null = null,
  ): Promise<{ user: User; created: boolean }> {
    await this.get(teamId);
    if (!isUuid(userId)) throw ApiError.notFound('User not found', 'user_not_found', 'user_id');
    const result = await this.dataSource.transaction(async (m) => {
      const user = await m.findOne(User, { where: { id: userId }, lock: { mode: 'pessimistic_write' } });
      if (!user) throw ApiError.notFound('User not found', 'user_not_found', 'user_id');
      // A team_admin manages its members' keys: it may not pull in someone it could not be
      // (an admin, or a role above its own), or it could revoke their keys.
      if (teamAdminRole !== null && !roleWithin(user.role, teamAdminRole)) {
        throw ApiError.forbidden(
          `A team_admin may add only users whose role is within its own (${teamAdminRole}); this user is ${user.role}`,
          'insufficient_permission',
        );
      }
      if (user.teamId !== null && user.teamId !== teamId) {
        throw ApiError.conflict(
          `The user is a member of another team (${user.teamId}): a user belongs to at most one team; remove them there first`,
          'user_id',
          'user_in_another_team',
        );
      }
      const created = user.teamId === null;
      const nextRole: TeamRole = role ?? (created ? 'member' : (user.teamRole ?? 'member'));
      if (!created && user.teamRole === nextRole) return { user, created, changed: false };
      await m.query(`UPDATE users SET team_id = $2, team_role = $3 WHERE id = $1`, [
        userId,
        teamId,
        nextRole,
      ]);
      let keys = 0;
      if (created) {
        const [, n] = (await m.query(`UPDATE api_keys SET team_id = $2 WHERE user_id = $1`, [
          userId,
          teamId,
        ])) as [unknown, number];
        keys = n;
      }
      await this.audit.record(m, request, {
        action: created ? 'team.member_add' : 'team.member_update',
        targetType: 'team',
        targetId: teamId,
        changes: created
          ? { user_id: userId, team_role: nextRole, keys_attached: keys }
          : { user_id: userId, team_role: { from: user.teamRole, to: nextRole } },
      });
      user.teamId = teamId;
      user.teamRole = nextRole;
      return { user, created, changed: true };
    });
    if (result.changed) await this.cache.invalidate({ kind: 'user', id: userId });
    return { user: result.user, created: result.created };
  }

  /** Removes a member; their keys leave the team with them. 404 when the user is not a member. */
  async removeMember(teamId: string, userId: string, request: FastifyRequest | null): Promise<void> {
    await this.get(teamId);
    if (!isUuid(userId))
      throw ApiError.notFound('No such member of this team', 'member_not_found', 'user_id');
    await this.dataSource.transaction(async (m) => {
      const user = await m.findOne(User, { where: { id: userId }, lock: { mode: 'pessimistic_write' } });
      if (!user || user.teamId !== teamId)
        throw ApiError.notFound('No such member of this team', 'member_not_found', 'user_id');
      await m.query(`UPDATE users SET team_id = NULL, team_role = NULL WHERE id = $1`, [userId]);
      const [, keys] = (await m.query(
        `UPDATE api_keys SET team_id = NULL WHERE user_id = $1 AND team_id = $2`,
        [userId, teamId],
      )) as [unknown, number];
      await this.audit.record(m, request, {
        action: 'team.member_remove',
        targetType: 'team',
        targetId: teamId,
        changes: { user_id: userId, team_role: user.teamRole, keys_detached: keys },
      });
    });
    await this.cache.invalidate({ kind: 'user', id: userId });
  }
}

function teamAuditFields(team: Team): Record<string, unknown> {
  return {
    name: team.name,
    weight: team.weight,
    limits: { rpm: team.rpm, tpm: team.tpm },
    budget:
      team.budgetLimitMicros !== null
        ? { limit_micros: Number(team.budgetLimitMicros), period: team.budgetPeriod }
        : null,
    allowed_models: team.allowedModels,
    max_priority: team.maxPriority,
  };
}

function conflictFor(err: unknown): ApiError | null {
  const index = uniqueViolation(err);
  if (index === null) return null;
  return ApiError.conflict('A team with this name already exists', 'name', 'team_name_taken');
}
