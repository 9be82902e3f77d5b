import {
  PERMISSIONS,
  TEAM_ADMIN_GRANTS,
  type Action,
  type Resource,
  type Scope,
} from '../common/permissions.js';
import { PRIORITY_RANK, ROLES, type Priority, type Role } from '../common/principal.js';

const ACTIONS: Action[] = ['read', 'write'];
const RESOURCES = Object.keys(PERMISSIONS.admin) as Resource[];

function covers(ceiling: Scope | undefined, wanted: Scope | undefined): boolean {
  if (!wanted) return true;
  if (!ceiling) return false;
  return ceiling === 'any' || wanted === 'own' || (ceiling === 'team' && wanted === 'team');
}

/**
 * Whether `candidate` grants nothing `ceiling` does not (computed from the permission matrix, so
 * it stays right when the matrix changes). An API key's role must be within its owner's role and
 * within the role of whoever creates it: user ⊂ developer, viewer ⊂ developer, but viewer ⊄ user
 * (viewers read status and providers, users do not).
 */
export function roleWithin(candidate: Role, ceiling: Role): boolean {
  return RESOURCES.every((resource) =>
    ACTIONS.every((action) =>
      covers(PERMISSIONS[ceiling][resource][action], PERMISSIONS[candidate][resource][action]),
    ),
  );
}

export function grantableRoles(ceiling: Role): Role[] {
  return ROLES.filter((r) => roleWithin(r, ceiling));
}

export type PermissionSummary = Record<Resource, { read: Scope | null; write: Scope | null }>;

/** What a role may do, resource by resource (GET /api/me shows it). */
export function permissionSummary(role: Role): PermissionSummary {
  return Object.fromEntries(
    RESOURCES.map((resource) => [
      resource,
      { read: PERMISSIONS[role][resource].read ?? null, write: PERMISSIONS[role][resource].write ?? null },
    ]),
  ) as PermissionSummary;
}

/** `candidate` is no more urgent than `ceiling` (rank 1 = urgent, so a larger rank is lower). */
export function priorityWithin(candidate: Priority, ceiling: Priority): boolean {
  return PRIORITY_RANK[candidate] >= PRIORITY_RANK[ceiling];
}

const SCOPE_LABEL: Record<Scope, string> = { any: 'all', own: 'own', team: 'own team' };

/**
 * The permission matrix as a Markdown table (resource × role, each cell `read`/`write` with its
 * scope). docs/auth.md carries this exact text; a unit test keeps the two equal.
 */
export function permissionMatrixMarkdown(): string {
  const roles = Object.keys(PERMISSIONS) as Role[];
  const cell = (table: Record<Resource, Partial<Record<Action, Scope>>>, resource: Resource): string => {
    const grants = ACTIONS.filter((a) => table[resource][a]).map((a) => {
      const scope = table[resource][a]!;
      return `${a}${scope === 'any' ? '' : ` (${SCOPE_LABEL[scope]})`}`;
    });
    return grants.length > 0 ? grants.join(', ') : '—';
  };
  // The last column is the team_admin scope: a membership role, granted on top of the user's role.
  return [
    `| resource | ${roles.join(' | ')} | team_admin (+) |`,
    `| --- | ${roles.map(() => '---').join(' | ')} | --- |`,
    ...RESOURCES.map(
      (resource) =>
        `| \`${resource}\` | ${roles.map((role) => cell(PERMISSIONS[role], resource)).join(' | ')} | ${cell(TEAM_ADMIN_GRANTS, resource)} |`,
    ),
  ].join('\n');
}
