import { describe, expect, it } from 'vitest';
import { callerCan, can, PERMISSIONS, type Action, type Resource } from '../common/permissions.js';
import { ROLES, type Role } from '../common/principal.js';
import { defaultKeyRole } from './api-keys.service.js';
import { grantableRoles, permissionSummary, priorityWithin, roleWithin } from './roles.js';

const RESOURCES: Resource[] = [
  'users',
  'api_keys',
  'providers',
  'provider_keys',
  'rate_limits',
  'adaptive',
  'status',
  'audit',
  'relay',
  'spend',
  'teams',
];

/** The matrix, written out independently of PERMISSIONS: [resource, action, scope] triples each role holds. */
const EXPECTED: Record<Role, string[]> = {
  admin: RESOURCES.flatMap((r) => [`${r}:read:any`, `${r}:write:any`]),
  developer: [
    'relay:read:any',
    'relay:write:any',
    'api_keys:read:own',
    'api_keys:write:own',
    'providers:read:any',
    'status:read:any',
    'adaptive:read:any',
    'spend:read:any',
  ],
  user: ['relay:read:any', 'relay:write:any', 'api_keys:read:own', 'api_keys:write:own', 'spend:read:own'],
  viewer: [
    'status:read:any',
    'providers:read:any',
    'api_keys:read:own',
    'api_keys:write:own',
    'spend:read:any',
  ],
};

describe('permission matrix can()', () => {
  for (const role of ROLES) {
    it(`${role}: exactly the grants of the issue`, () => {
      const held: string[] = [];
      for (const resource of RESOURCES) {
        for (const action of ['read', 'write'] as Action[]) {
          if (can(role, resource, action, 'any')) held.push(`${resource}:${action}:any`);
          else if (can(role, resource, action, 'own')) held.push(`${resource}:${action}:own`);
        }
      }
      expect(held.sort()).toEqual([...EXPECTED[role]].sort());
    });
  }

  it('team_admin (a membership role) adds team-scoped grants on teams and api_keys, and nothing else', () => {
    const teamAdmin = { role: 'user' as Role, team: { role: 'team_admin' } };
    const member = { role: 'user' as Role, team: { role: 'member' } };
    for (const resource of ['teams', 'api_keys'] as Resource[]) {
      for (const action of ['read', 'write'] as Action[]) {
        expect(callerCan(teamAdmin, resource, action, 'team')).toBe(true);
        expect(callerCan(teamAdmin, resource, action, 'any')).toBe(false);
        expect(callerCan(member, resource, action, 'team')).toBe(false);
      }
    }
    for (const resource of RESOURCES.filter((r) => r !== 'teams' && r !== 'api_keys' && r !== 'relay')) {
      expect(callerCan(teamAdmin, resource, 'write', 'team')).toBe(false);
      expect(callerCan(teamAdmin, resource, 'read', 'any')).toBe(false);
    }
    // no role holds a team grant; an admin's `any` covers a team-scoped route
    expect(can('admin', 'teams', 'write', 'team')).toBe(true);
    expect(can('developer', 'teams', 'read', 'team')).toBe(false);
  });

  it('an `any` grant covers `own`; an `own` grant does not cover `any`', () => {
    expect(can('admin', 'api_keys', 'write', 'own')).toBe(true);
    expect(can('user', 'api_keys', 'write', 'own')).toBe(true);
    expect(can('user', 'api_keys', 'write', 'any')).toBe(false);
    expect(can('user', 'api_keys', 'write')).toBe(false);
  });

  it('viewer has no relay; nobody but admin touches users, provider_keys, rate_limits or audit', () => {
    expect(can('viewer', 'relay', 'write')).toBe(false);
    for (const role of ['developer', 'user', 'viewer'] as Role[]) {
      for (const resource of ['users', 'provider_keys', 'rate_limits', 'audit'] as Resource[]) {
        expect(can(role, resource, 'read', 'own')).toBe(false);
        expect(can(role, resource, 'write', 'own')).toBe(false);
      }
    }
  });

  it('covers every resource for every role (a single table)', () => {
    for (const role of ROLES) expect(Object.keys(PERMISSIONS[role]).sort()).toEqual([...RESOURCES].sort());
  });
});

describe('roleWithin (an API key never outranks its owner or creator)', () => {
  it.each([
    ['admin', ['admin', 'developer', 'user', 'viewer']],
    ['developer', ['developer', 'user', 'viewer']],
    ['user', ['user']],
    ['viewer', ['viewer']],
  ] as [Role, Role[]][])('a %s may hold keys of roles %j', (ceiling, roles) => {
    expect(grantableRoles(ceiling)).toEqual(roles);
  });

  it('viewer is not within user (viewers read status and providers, users do not), nor user within viewer', () => {
    expect(roleWithin('viewer', 'user')).toBe(false);
    expect(roleWithin('user', 'viewer')).toBe(false);
  });

  it('the default key role is the highest within both owner and creator', () => {
    expect(defaultKeyRole('user', 'admin')).toBe('user');
    expect(defaultKeyRole('admin', 'admin')).toBe('admin');
    expect(defaultKeyRole('developer', 'viewer')).toBe('viewer');
    expect(defaultKeyRole('user', 'viewer')).toBeNull();
  });

  it('priorities rank low < normal < high < urgent', () => {
    expect(priorityWithin('high', 'urgent')).toBe(true);
    expect(priorityWithin('urgent', 'high')).toBe(false);
    expect(priorityWithin('low', 'normal')).toBe(true);
    expect(priorityWithin('normal', 'normal')).toBe(true);
  });

  it('permissionSummary lists every resource with read/write scopes or null', () => {
    const s = permissionSummary('developer');
    expect(Object.keys(s).sort()).toEqual([...RESOURCES].sort());
    expect(s.api_keys).toEqual({ read: 'own', write: 'own' });
    expect(s.providers).toEqual({ read: 'any', write: null });
    expect(s.users).toEqual({ read: null, write: null });
  });
});
