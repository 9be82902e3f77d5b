import { applyDecorators, SetMetadata } from '@nestjs/common';
import { ApiBearerAuth, ApiForbiddenResponse, ApiSecurity, ApiUnauthorizedResponse } from '@nestjs/swagger';
import { ErrorResponseDto } from './error.dto.js';
import type { Role } from './principal.js';

export type Resource =
  | 'users'
  | 'api_keys'
  | 'providers'
  | 'provider_keys'
  | 'rate_limits'
  | 'adaptive'
  | 'status'
  | 'audit'
  | 'relay'
  | 'spend'
  | 'teams';
export type Action = 'read' | 'write';
/**
 * `own`: only what the caller owns (their API keys); `team`: only their own team's (its members and
 * their keys — granted by team membership, TEAM_ADMIN_GRANTS, never by a role); `any`: everyone's.
 */
export type Scope = 'own' | 'team' | 'any';

type Grants = Partial<Record<Action, Scope>>;

/**
 * THE permission matrix (also printed in the README). Every route names one (resource, action,
 * scope) with @RequirePermission; the auth guard checks the caller's role against this table.
 */
export const PERMISSIONS: Record<Role, Record<Resource, Grants>> = {
  admin: {
    users: { read: 'any', write: 'any' },
    api_keys: { read: 'any', write: 'any' },
    providers: { read: 'any', write: 'any' },
    provider_keys: { read: 'any', write: 'any' },
    rate_limits: { read: 'any', write: 'any' },
    adaptive: { read: 'any', write: 'any' },
    status: { read: 'any', write: 'any' },
    audit: { read: 'any', write: 'any' },
    relay: { read: 'any', write: 'any' },
    spend: { read: 'any', write: 'any' },
    teams: { read: 'any', write: 'any' },
  },
  developer: {
    users: {},
    api_keys: { read: 'own', write: 'own' },
    providers: { read: 'any' },
    provider_keys: {},
    rate_limits: {},
    adaptive: { read: 'any' },
    status: { read: 'any' },
    audit: {},
    relay: { read: 'any', write: 'any' },
    spend: { read: 'any' },
    teams: {},
  },
  user: {
    users: {},
    api_keys: { read: 'own', write: 'own' },
    providers: {},
    provider_keys: {},
    rate_limits: {},
    adaptive: {},
    status: {},
    audit: {},
    relay: { read: 'any', write: 'any' },
    spend: { read: 'own' },
    teams: {},
  },
  viewer: {
    users: {},
    api_keys: { read: 'own', write: 'own' },
    providers: { read: 'any' },
    provider_keys: {},
    rate_limits: {},
    adaptive: {},
    status: { read: 'any' },
    audit: {},
    relay: {},
    spend: { read: 'any' },
    teams: {},
  },
};

/**
 * What a team's `team_admin` (a membership role, not a user role) may do on top of its user role,
 * on its own team only: read the team and manage its members, and list, create and revoke its
 * members' API keys. Routes that accept it declare scope `team` and check the target's team.
 */
export const TEAM_ADMIN_GRANTS: Record<Resource, Grants> = {
  users: {},
  api_keys: { read: 'team', write: 'team' },
  providers: {},
  provider_keys: {},
  rate_limits: {},
  adaptive: {},
  status: {},
  audit: {},
  relay: {},
  spend: {},
  teams: { read: 'team', write: 'team' },
};

/** Whether a grant covers the scope a route asks for (`any` ⊃ `team`, `any` ⊃ `own`). */
function grantCovers(granted: Scope | undefined, scope: Scope): boolean {
  if (!granted) return false;
  return granted === 'any' || scope === 'own' || (granted === 'team' && scope === 'team');
}

export function can(role: Role, resource: Resource, action: Action, scope: Scope = 'any'): boolean {
  return grantCovers(PERMISSIONS[role]?.[resource]?.[action], scope);
}

/**
 * `can` for a caller: its role's grants, plus TEAM_ADMIN_GRANTS when it is its team's team_admin
 * (only routes that declare scope `team` accept those; the handler then checks the target's team).
 */
export function callerCan(
  caller: { role: Role; team?: { role: string } | null },
  resource: Resource,
  action: Action,
  scope: Scope = 'any',
): boolean {
  if (can(caller.role, resource, action, scope)) return true;
  return caller.team?.role === 'team_admin' && grantCovers(TEAM_ADMIN_GRANTS[resource][action], scope);
}

export interface RequiredPermission {
  resource: Resource;
  action: Action;
  scope: Scope;
}

export const REQUIRED_PERMISSION = 'floodgate:permission';

/**
 * One decorator that both enforces (the global auth guard reads the metadata) and documents
 * (Swagger security schemes and the 401/403 answers) what a route requires.
 */
export function RequirePermission(
  resource: Resource,
  action: Action,
  scope: Scope = 'any',
): MethodDecorator & ClassDecorator {
  const required: RequiredPermission = { resource, action, scope };
  return applyDecorators(
    SetMetadata(REQUIRED_PERMISSION, required),
    ApiBearerAuth('bearer'),
    ApiSecurity('api-key'),
    ApiUnauthorizedResponse({
      description: 'Missing, invalid, expired or revoked credentials',
      type: ErrorResponseDto,
    }),
    ApiForbiddenResponse({
      description: `Needs ${action} on ${resource}${scope === 'own' ? ' (own)' : scope === 'team' ? ' (any, or its own team as team_admin)' : ''}`,
      type: ErrorResponseDto,
    }),
  );
}

/**
 * Documents a route that needs valid credentials but no particular permission (e.g. GET /api/me).
 * Enforcement needs no decorator: the global auth guard denies every non-@Public() route to
 * anonymous callers.
 */
export function Authenticated(): MethodDecorator & ClassDecorator {
  return applyDecorators(
    ApiBearerAuth('bearer'),
    ApiSecurity('api-key'),
    ApiUnauthorizedResponse({
      description: 'Missing, invalid, expired or revoked credentials',
      type: ErrorResponseDto,
    }),
  );
}
