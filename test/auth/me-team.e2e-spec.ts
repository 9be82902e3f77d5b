/**
 * GET /api/me's team fields: `team` (id and membership role), and for a team_admin `team_admin_of`
 * and `team_permissions` (what it may do on its own team, scope `team`); the existing fields are
 * unchanged. A member gets its team but no grants; a user without a team gets none of it.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUserWithKey, newApiKey, type UserWithKey } from '../support/auth.js';
import { getJson, startGateway, type TestGateway } from '../support/gateway.js';

describe('GET /api/me: team membership and team_admin grants', () => {
  let gw: TestGateway;
  const adminKey = newApiKey();
  let teamId: string;
  let lead: UserWithKey;
  let member: UserWithKey;
  let loner: UserWithKey;
  const call = (key: string, method = 'GET', path = '/api/me', body?: unknown) =>
    getJson(`${gw.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  beforeAll(async () => {
    gw = await startGateway('embedded', { ADMIN_BOOTSTRAP_KEY: adminKey });
    const team = await call(adminKey, 'POST', '/api/admin/teams', { name: `me-${randomUUID().slice(0, 8)}` });
    expect(team.status).toBe(201);
    teamId = team.body.id;
    lead = await createUserWithKey(gw, adminKey, 'user');
    member = await createUserWithKey(gw, adminKey, 'user');
    loner = await createUserWithKey(gw, adminKey, 'user');
    for (const [u, role] of [
      [lead, 'team_admin'],
      [member, 'member'],
    ] as const) {
      const joined = await call(adminKey, 'POST', `/api/admin/teams/${teamId}/members/${u.user.id}`, {
        role,
      });
      expect(joined.status).toBe(201);
    }
  });
  afterAll(async () => {
    await gw?.close();
  });

  it("a team_admin: its team, team_admin_of and the team-scoped grants; the role's own permissions unchanged", async () => {
    await expect
      .poll(async () => (await call(lead.key)).body.team, { timeout: 5000 })
      .toEqual({
        id: teamId,
        role: 'team_admin',
      });
    const me = (await call(lead.key)).body;
    expect(me).toMatchObject({ id: lead.user.id, role: 'user', user_role: 'user', method: 'api_key' });
    expect(me.team_admin_of).toEqual([teamId]);
    expect(me.team_permissions.api_keys).toEqual({ read: 'team', write: 'team' });
    expect(me.team_permissions.teams).toEqual({ read: 'team', write: 'team' });
    expect(me.team_permissions.providers).toEqual({ read: null, write: null });
    // the existing field still says what the role alone may do
    expect(me.permissions.api_keys).toEqual({ read: 'own', write: 'own' });
    // and what it says is what the API allows: the team's keys, not another team's
    const keys = await call(lead.key, 'GET', '/api/admin/api-keys');
    expect(keys.status).toBe(200);
    expect(keys.body.data.map((k: { owner_id: string }) => k.owner_id).sort()).toEqual(
      [lead.user.id, member.user.id].sort(),
    );
    expect((await call(lead.key, 'GET', `/api/admin/api-keys?team_id=${randomUUID()}`)).status).toBe(403);
  });

  it('a member: its team, no grants; no team: null and empty; an admin without a team too', async () => {
    await expect
      .poll(async () => (await call(member.key)).body.team, { timeout: 5000 })
      .toEqual({
        id: teamId,
        role: 'member',
      });
    const me = (await call(member.key)).body;
    expect(me.team_admin_of).toEqual([]);
    expect(me.team_permissions).toBeNull();
    for (const key of [loner.key, adminKey]) {
      const other = (await call(key)).body;
      expect(other).toMatchObject({ team: null, team_admin_of: [], team_permissions: null });
      expect(other.permissions).toBeDefined();
    }
    expect((await call(adminKey)).body.permissions.api_keys).toEqual({ read: 'any', write: 'any' });
  });

  it('401 without credentials', async () => {
    const res = await getJson(`${gw.url}/api/me`);
    expect(res.status).toBe(401);
    expect(res.body.error.type).toBeDefined();
  });
});
