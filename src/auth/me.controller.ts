import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal } from '../common/current-principal.decorator.js';
import { Authenticated, TEAM_ADMIN_GRANTS, type Resource } from '../common/permissions.js';
import type { Principal } from '../common/principal.js';
import { ApiError } from '../common/api-error.js';
import { maskApiKey } from './api-key-format.js';
import { ApiKeysService } from './api-keys.service.js';
import { MeDto } from './dto/me.dto.js';
import { permissionSummary, type PermissionSummary } from './roles.js';
import { UsersService } from './users.service.js';

@ApiTags('identity')
@Controller('api/me')
export class MeController {
  constructor(
    private readonly users: UsersService,
    private readonly keys: ApiKeysService,
  ) {}

  @Get()
  @Authenticated()
  @ApiOperation({
    summary: 'The authenticated caller',
    description:
      "Who the credentials belong to, how they authenticated, the API key used (if any) and what the effective role may do (`permissions`). `team` is the caller's team membership as this request carries it (null: none); a `team_admin` also gets `team_admin_of` (its team's id) and `team_permissions`, what it may do on that team only (scope `team`: e.g. list, create, change and revoke the team's keys) on top of `permissions`.",
  })
  @ApiOkResponse({ type: MeDto })
  async me(@CurrentPrincipal() principal: Principal): Promise<MeDto> {
    const user = await this.users.findById(principal.userId);
    if (!user) throw ApiError.unauthorized('User no longer exists', 'user_not_found');
    const key = principal.apiKeyId ? await this.keys.findById(principal.apiKeyId) : null;
    const teamAdmin = principal.team?.role === 'team_admin' ? principal.team : null;
    return {
      id: user.id,
      email: user.email,
      name: user.name,
      role: principal.role,
      user_role: user.role,
      method: principal.method,
      api_key: key
        ? {
            id: key.id,
            name: key.name,
            masked: maskApiKey(key.prefix, key.last4),
            role: key.role,
            limits: { rpm: key.rpm, tpm: key.tpm },
            allowed_models: key.allowedModels,
            max_priority: key.maxPriority,
            expires_at: key.expiresAt?.toISOString() ?? null,
          }
        : null,
      permissions: permissionSummary(principal.role),
      team: principal.team ? { id: principal.team.id, role: principal.team.role } : null,
      team_admin_of: teamAdmin ? [teamAdmin.id] : [],
      team_permissions: teamAdmin ? teamPermissionSummary() : null,
    };
  }
}

/** What a team_admin may do on its own team (TEAM_ADMIN_GRANTS), in the shape of `permissions`. */
function teamPermissionSummary(): PermissionSummary {
  return Object.fromEntries(
    (Object.keys(TEAM_ADMIN_GRANTS) as Resource[]).map((resource) => [
      resource,
      { read: TEAM_ADMIN_GRANTS[resource].read ?? null, write: TEAM_ADMIN_GRANTS[resource].write ?? null },
    ]),
  ) as PermissionSummary;
}
