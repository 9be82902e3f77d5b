/**
 * Teams (docs/auth.md "Teams"): CRUD with validation and audit, members (one team per user, team
 * roles), keys that follow their owner's team, the team_admin scope (its own team only), the team's
 * allowed_models and max_priority folded into its keys on the relay, and cache invalidation.
 */
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey, signHs256, type UserWithKey } from '../support/auth.js';
import { getJson, MODES } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';
import { NO_CLIENT_LIMITS } from '../security/helpers.js';

const uniq = (p: string): string => `${p}-${randomBytes(4).toString('hex')}`;
const MISSING = '00000000-0000-4000-8000-00000000abcd';
const JWT_SECRET = 'teams-e2e-jwt-secret-0123456789abcdef';

describe.each(MODES)('teams (%s mode)', (mode) => {
  let fx: RelayFixture;
  let db: DataSource;
  const as = (credential: string, method: string, path: string, body?: unknown) =>
    getJson(`${fx.gw.url}${path}`, {
      method,
      headers: bearer(credential, body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const admin = (method: string, path: string, body?: unknown) =>
    body === undefined ? as(fx.adminKey, method, path) : adminCall(fx.gw, fx.adminKey, method, path, body);
  const newTeam = async (body: Record<string, unknown> = {}): Promise<string> => {
    const r = await admin('POST', '/api/admin/teams', { name: uniq('team'), ...body });
    if (r.status !== 201) throw new Error(`team: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.id as string;
  };
  const auditOf = async (action: string, teamId: string) => {
    const r = await admin('GET', `/api/admin/audit?action=${action}&target_type=team&limit=100`);
    return (r.body.data as { target_id: string; changes: Record<string, unknown> }[]).filter(
      (e) => e.target_id === teamId,
    );
  };
  const chat = (key: string, model = 'gpt-4o-mini', headers: Record<string, string> = {}) =>
    getJson(`${fx.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...bearer(key), ...headers },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    });

  beforeAll(async () => {
    fx = await startRelay(mode, { env: { ...NO_CLIENT_LIMITS, JWT_SECRET } });
    db = fx.gw.app.get(DataSource);
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('creates a team with every field, shows it, lists it; defaults when omitted; audited', async () => {
    const name = uniq('search');
    const created = await admin('POST', '/api/admin/teams', {
      name,
      weight: 3,
      limits: { rpm: 600, tpm: 200000 },
      budget: { limit_usd: 250.5, period: 'month' },
      allowed_models: ['gpt-4o-mini', 'org/*'],
      max_priority: 'high',
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name,
      weight: 3,
      limits: { rpm: 600, tpm: 200000 },
      budget: { limit_usd: 250.5, period: 'month', enforced: true },
      allowed_models: ['gpt-4o-mini', 'org/*'],
      max_priority: 'high',
      member_count: 0,
    });
    const stored = (await db.query(`SELECT budget_limit_micros FROM teams WHERE id = $1`, [
      created.body.id,
    ])) as {
      budget_limit_micros: string;
    }[];
    expect(stored[0]!.budget_limit_micros).toBe('250500000');

    const got = await admin('GET', `/api/admin/teams/${created.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id: created.body.id, name, members: [] });

    const plain = await admin('POST', '/api/admin/teams', { name: uniq('plain') });
    expect(plain.status).toBe(201);
    expect(plain.body).toMatchObject({
      weight: 1,
      limits: { rpm: null, tpm: null },
      budget: null,
      allowed_models: null,
      max_priority: 'urgent',
    });

    const list = await admin('GET', '/api/admin/teams?limit=500');
    expect(list.status).toBe(200);
    expect(list.body.data.map((t: { id: string }) => t.id)).toEqual(
      expect.arrayContaining([created.body.id, plain.body.id]),
    );
    const audit = await auditOf('team.create', created.body.id);
    expect(audit).toHaveLength(1);
    expect(audit[0]!.changes).toMatchObject({ name, weight: 3, max_priority: 'high' });
  });

  it('refuses bad input with a 400 naming the field, a duplicate name with 409, unknown ids with 404', async () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ name: uniq('t'), weight: 0 }, 'weight'],
      [{ name: uniq('t'), weight: 1001 }, 'weight'],
      [{ name: uniq('t'), weight: 1.5 }, 'weight'],
      [{ name: uniq('t'), limits: { rpm: 0 } }, 'limits.rpm'],
      [{ name: uniq('t'), limits: { rpm: 5, burst: 3 } }, 'limits.burst'],
      [{ name: uniq('t'), budget: { limit_usd: -1, period: 'month' } }, 'budget.limit_usd'],
      [{ name: uniq('t'), budget: { limit_usd: 1.0000001, period: 'month' } }, 'budget.limit_usd'],
      [{ name: uniq('t'), budget: { limit_usd: 5, period: 'year' } }, 'budget.period'],
      [{ name: uniq('t'), allowed_models: 'gpt-4o' }, 'allowed_models'],
      [{ name: uniq('t'), max_priority: 'extreme' }, 'max_priority'],
      [{ name: '' }, 'name'],
      [{ name: uniq('t'), members: [] }, 'members'],
    ];
    for (const [body, field] of bad) {
      const r = await admin('POST', '/api/admin/teams', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.param, JSON.stringify(body)).toBe(field);
    }
    const name = uniq('dup');
    expect((await admin('POST', '/api/admin/teams', { name })).status).toBe(201);
    const dup = await admin('POST', '/api/admin/teams', { name: name.toUpperCase() });
    expect(dup.status).toBe(409);
    expect(dup.body.error).toMatchObject({ code: 'team_name_taken', param: 'name' });

    expect((await admin('GET', `/api/admin/teams/${MISSING}`)).status).toBe(404);
    expect((await admin('GET', '/api/admin/teams/not-a-uuid')).status).toBe(404);
    expect((await admin('PATCH', `/api/admin/teams/${MISSING}`, { weight: 2 })).status).toBe(404);
    expect((await admin('DELETE', `/api/admin/teams/${MISSING}`)).status).toBe(404);
    expect((await admin('POST', `/api/admin/teams/${MISSING}/members/${MISSING}`, {})).status).toBe(404);
    const team = await newTeam();
    const noUser = await admin('POST', `/api/admin/teams/${team}/members/${MISSING}`, {});
    expect(noUser.status).toBe(404);
    expect(noUser.body.error.param).toBe('user_id');
    const badRole = await admin('POST', `/api/admin/teams/${team}/members/${MISSING}`, { role: 'owner' });
    expect(badRole.status).toBe(400);
    expect(badRole.body.error.param).toBe('role');
    const empty = await admin('PATCH', `/api/admin/teams/${team}`, {});
    expect(empty.status).toBe(400);
  });

  it('PATCH changes only what it names, clears with null, and audits from/to', async () => {
    const id = await newTeam({
      weight: 2,
      limits: { rpm: 10, tpm: 100 },
      budget: { limit_usd: 5, period: 'day' },
    });
    const r = await admin('PATCH', `/api/admin/teams/${id}`, {
      weight: 7,
      limits: { tpm: null },
      budget: null,
      max_priority: 'low',
    });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      weight: 7,
      limits: { rpm: 10, tpm: null },
      budget: null,
      max_priority: 'low',
    });
    const audit = await auditOf('team.update', id);
    expect(audit).toHaveLength(1);
    expect(audit[0]!.changes).toMatchObject({
      weight: { from: 2, to: 7 },
      max_priority: { from: 'urgent', to: 'low' },
    });
    expect(audit[0]!.changes).not.toHaveProperty('name');
  });

  it('members: add (201), change role (200), one team per user (409), remove (204, 404 after); keys follow', async () => {
    const a = await newTeam();
    const b = await newTeam();
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    const added = await admin('POST', `/api/admin/teams/${a}/members/${u.user.id}`, {});
    expect(added.status).toBe(201);
    expect(added.body).toMatchObject({ user_id: u.user.id, team_role: 'member', user_role: 'user' });
    // the existing key joined the team with its owner; the user shows it
    expect((await admin('GET', `/api/admin/api-keys?user_id=${u.user.id}`)).body.data[0].team_id).toBe(a);
    expect((await admin('GET', `/api/admin/users/${u.user.id}`)).body).toMatchObject({
      team_id: a,
      team_role: 'member',
    });

    const promoted = await admin('POST', `/api/admin/teams/${a}/members/${u.user.id}`, {
      role: 'team_admin',
    });
    expect(promoted.status).toBe(200);
    expect(promoted.body.team_role).toBe('team_admin');
    expect(
      (await admin('POST', `/api/admin/teams/${a}/members/${u.user.id}`, { role: 'team_admin' })).status,
    ).toBe(200);

    const other = await admin('POST', `/api/admin/teams/${b}/members/${u.user.id}`, {});
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('user_in_another_team');

    const team = await admin('GET', `/api/admin/teams/${a}`);
    expect(team.body.member_count).toBe(1);
    expect(team.body.members).toEqual([
      expect.objectContaining({ user_id: u.user.id, team_role: 'team_admin', email: u.user.email }),
    ]);

    // a key created now carries the team by default; another team_id is a 400 naming team_id
    const k = await admin('POST', `/api/admin/users/${u.user.id}/keys`, { name: 'k2' });
    expect(k.status).toBe(201);
    expect(k.body.team_id).toBe(a);
    const wrong = await admin('POST', `/api/admin/users/${u.user.id}/keys`, { name: 'k3', team_id: b });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.param).toBe('team_id');
    const escape = await admin('POST', `/api/admin/users/${u.user.id}/keys`, { name: 'k4', team_id: null });
    expect(escape.status).toBe(400);
    const explicit = await admin('POST', `/api/admin/users/${u.user.id}/keys`, { name: 'k5', team_id: a });
    expect(explicit.status).toBe(201);

    expect((await admin('DELETE', `/api/admin/teams/${a}/members/${u.user.id}`)).status).toBe(204);
    expect((await admin('DELETE', `/api/admin/teams/${a}/members/${u.user.id}`)).status).toBe(404);
    const keys = await admin('GET', `/api/admin/api-keys?user_id=${u.user.id}`);
    expect(keys.body.data.every((key: { team_id: string | null }) => key.team_id === null)).toBe(true);
    expect((await auditOf('team.member_add', a))[0]!.changes).toMatchObject({
      user_id: u.user.id,
      keys_attached: 1,
    });
    expect((await auditOf('team.member_remove', a))[0]!.changes).toMatchObject({
      user_id: u.user.id,
      keys_detached: 3,
    });
    // now free to join b
    expect((await admin('POST', `/api/admin/teams/${b}/members/${u.user.id}`, {})).status).toBe(201);
  });

  it('deleting a team detaches its members and keys (audited), and the team stops applying at once', async () => {
    const id = await newTeam({ allowed_models: ['gpt-4o'] });
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    await admin('POST', `/api/admin/teams/${id}/members/${u.user.id}`, {});
    expect((await chat(u.key, 'gpt-4o-mini')).status).toBe(403); // cached with the team's list
    const del = await admin('DELETE', `/api/admin/teams/${id}`);
    expect(del.status, JSON.stringify(del.body)).toBe(204);
    expect((await admin('GET', `/api/admin/teams/${id}`)).status).toBe(404);
    expect((await admin('GET', `/api/admin/users/${u.user.id}`)).body).toMatchObject({
      team_id: null,
      team_role: null,
    });
    expect((await admin('GET', `/api/admin/api-keys?user_id=${u.user.id}`)).body.data[0].team_id).toBeNull();
    expect((await chat(u.key, 'gpt-4o-mini')).status).toBe(200);
    const audit = await auditOf('team.delete', id);
    expect(audit[0]!.changes).toMatchObject({ detached_members: [u.user.id], detached_keys: 1 });
  });

  it("the team's allowed_models and max_priority narrow its keys on the relay; a PATCH applies at once", async () => {
    const id = await newTeam({ allowed_models: ['gpt-4o*'], max_priority: 'normal' });
    const u = await createUserWithKey(fx.gw, fx.adminKey, 'user', {
      key: { allowed_models: ['gpt-4o-mini', 'text-embedding-3-small'], max_priority: 'high' },
    });
    expect((await chat(u.key, 'text-embedding-3-small')).status).toBe(200); // no team yet
    await admin('POST', `/api/admin/teams/${id}/members/${u.user.id}`, {});
    expect((await chat(u.key, 'gpt-4o-mini')).status).toBe(200); // both allow it
    const refused = await chat(u.key, 'text-embedding-3-small'); // the key allows it, the team does not
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('model_not_allowed');
    expect(refused.body.error.message).toContain('text-embedding-3-small');
    expect((await chat(u.key, 'gpt-4o')).status).toBe(403); // the team allows it, the key does not
    const high = await chat(u.key, 'gpt-4o-mini', { 'x-priority': 'high' }); // key: high, team: normal
    expect(high.status).toBe(403);
    expect(high.body.error.code).toBe('priority_not_allowed');
    expect((await chat(u.key, 'gpt-4o-mini', { 'x-priority': 'normal' })).status).toBe(200);

    await admin('PATCH', `/api/admin/teams/${id}`, { allowed_models: null, max_priority: 'urgent' });
    expect((await chat(u.key, 'text-embedding-3-small')).status).toBe(200);
    expect((await chat(u.key, 'gpt-4o-mini', { 'x-priority': 'high' })).status).toBe(200);
  });

  describe('team_admin', () => {
    let team: string;
    let otherTeam: string;
    let ta: UserWithKey;
    let member: UserWithKey;
    let outsider: UserWithKey;
    let foreign: UserWithKey;
    /** A developer outside any team: above the team_admin's own role (user). */
    let higher: UserWithKey;

    beforeAll(async () => {
      team = await newTeam();
      otherTeam = await newTeam();
      ta = await createUserWithKey(fx.gw, fx.adminKey, 'user');
      member = await createUserWithKey(fx.gw, fx.adminKey, 'developer');
      outsider = await createUserWithKey(fx.gw, fx.adminKey, 'user');
      foreign = await createUserWithKey(fx.gw, fx.adminKey, 'user');
      higher = await createUserWithKey(fx.gw, fx.adminKey, 'developer');
      await admin('POST', `/api/admin/teams/${team}/members/${ta.user.id}`, { role: 'team_admin' });
      await admin('POST', `/api/admin/teams/${team}/members/${member.user.id}`, { role: 'member' });
      await admin('POST', `/api/admin/teams/${otherTeam}/members/${foreign.user.id}`, {});
    });

    it('reads its own team, manages its members', async () => {
      const got = await as(ta.key, 'GET', `/api/admin/teams/${team}`);
      expect(got.status).toBe(200);
      expect(got.body.members).toHaveLength(2);
      const add = await as(ta.key, 'POST', `/api/admin/teams/${team}/members/${outsider.user.id}`, {});
      expect(add.status).toBe(201);
      expect(
        (await as(ta.key, 'DELETE', `/api/admin/teams/${team}/members/${outsider.user.id}`)).status,
      ).toBe(204);
    });

    it("creates and revokes its members' keys, lists its team's keys only", async () => {
      const created = await as(ta.key, 'POST', `/api/admin/users/${member.user.id}/keys`, {
        name: 'by-team-admin',
        role: 'user',
      });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ team_id: team, owner_id: member.user.id, role: 'user' });
      const list = await as(ta.key, 'GET', '/api/admin/api-keys');
      expect(list.status).toBe(200);
      expect(list.body.data.length).toBeGreaterThan(0);
      expect(list.body.data.every((k: { team_id: string }) => k.team_id === team)).toBe(true);
      expect((await as(ta.key, 'DELETE', `/api/admin/api-keys/${created.body.id}`)).status).toBe(204);
      expect((await chat(created.body.key)).status).toBe(401);
      // role and priority rules still apply: not above its own role, never urgent
      const urgent = await as(ta.key, 'POST', `/api/admin/users/${member.user.id}/keys`, {
        name: 'x',
        role: 'user',
        max_priority: 'urgent',
      });
      expect(urgent.status).toBe(403);
    });

    it('403 on other teams, on users outside its team, and on everything else admin-only', async () => {
      const denied: [string, string, unknown?][] = [
        ['GET', `/api/admin/teams/${otherTeam}`],
        ['GET', `/api/admin/teams/${MISSING}`],
        ['POST', `/api/admin/teams/${otherTeam}/members/${outsider.user.id}`, {}],
        ['DELETE', `/api/admin/teams/${otherTeam}/members/${foreign.user.id}`],
        ['POST', `/api/admin/users/${foreign.user.id}/keys`, { name: 'x' }],
        ['POST', `/api/admin/users/${outsider.user.id}/keys`, { name: 'x' }],
        ['POST', `/api/admin/users/${MISSING}/keys`, { name: 'x' }],
        ['DELETE', `/api/admin/api-keys/${foreign.keyId}`],
        ['POST', `/api/admin/teams/${team}/members/${higher.user.id}`, {}],
        ['GET', `/api/admin/api-keys?team_id=${otherTeam}`],
        ['GET', '/api/admin/teams'],
        ['POST', '/api/admin/teams', { name: uniq('x') }],
        ['PATCH', `/api/admin/teams/${team}`, { weight: 5 }],
        ['DELETE', `/api/admin/teams/${team}`],
        ['GET', '/api/admin/users'],
        ['PATCH', `/api/admin/users/${member.user.id}`, { role: 'admin' }],
        ['GET', '/api/admin/audit'],
        ['GET', `/api/admin/rate-limits/team:${team}`],
      ];
      for (const [method, path, body] of denied) {
        const r = await as(ta.key, method, path, body);
        expect(r.status, `${method} ${path}`).toBe(403);
      }
      // the foreign key still works: nothing was revoked
      expect((await chat(foreign.key)).status).toBe(200);
    });

    it("a JWT caller carries its user's team: team_admin scope, and the team's rpm on the relay", async () => {
      const subject = uniq('sub');
      const created = await admin('POST', '/api/admin/users', {
        email: `${subject}@example.com`,
        role: 'user',
        jwt_subject: subject,
      });
      expect(created.status).toBe(201);
      const token = signHs256(JWT_SECRET, { sub: subject, email: `${subject}@example.com` });
      const jwtTeam = await newTeam({ limits: { rpm: 4 } });
      expect((await as(token, 'GET', `/api/admin/teams/${jwtTeam}`)).status).toBe(403); // cached, no team
      await admin('POST', `/api/admin/teams/${jwtTeam}/members/${created.body.id}`, { role: 'team_admin' });
      expect((await as(token, 'GET', `/api/admin/teams/${jwtTeam}`)).status).toBe(200);
      expect((await as(token, 'GET', `/api/admin/teams/${team}`)).status).toBe(403);
      // the team's rpm (4) counts every request of the JWT since it joined — the two reads above, then
      // the relay (the user's limits are out of reach)
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) statuses.push((await chat(token)).status);
      expect(statuses).toEqual([200, 200, 429]);
      await admin('DELETE', `/api/admin/teams/${jwtTeam}/members/${created.body.id}`);
      expect((await as(token, 'GET', `/api/admin/teams/${jwtTeam}`)).status).toBe(403);
    });

    it('a plain member has no team_admin scope; demotion takes effect at once', async () => {
      expect((await as(member.key, 'GET', `/api/admin/teams/${team}`)).status).toBe(403);
      expect((await as(member.key, 'GET', '/api/admin/api-keys')).status).toBe(403);
      const ta2 = await createUserWithKey(fx.gw, fx.adminKey, 'user');
      await admin('POST', `/api/admin/teams/${team}/members/${ta2.user.id}`, { role: 'team_admin' });
      expect((await as(ta2.key, 'GET', `/api/admin/teams/${team}`)).status).toBe(200);
      await admin('POST', `/api/admin/teams/${team}/members/${ta2.user.id}`, { role: 'member' });
      expect((await as(ta2.key, 'GET', `/api/admin/teams/${team}`)).status).toBe(403);
    });
  });
});
