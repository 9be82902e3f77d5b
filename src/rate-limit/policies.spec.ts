import { describe, expect, it } from 'vitest';
import type { Principal } from '../common/principal.js';
import type { RateLimitConfig } from '../config/app-config.js';
import {
  applicablePolicies,
  parseSubject,
  principalPolicies,
  routePolicy,
  subjectKeys,
  subjectPolicies,
} from './policies.js';
import { KIND_SLIDING_BUCKETS, KIND_SLIDING_WINDOW, SLIDING_EXACT_MAX } from './rate-limit.scripts.js';
import type { RateLimitOptions } from './rate-limit.types.js';

const config: RateLimitConfig = {
  failureMode: 'open',
  keyRpm: 60,
  userRpm: 600,
  ipRpm: 1000,
  ipAlgorithm: 'sliding_window',
  ipBurst: 100,
  decisionTimeoutMs: 100,
  adminDecisionTimeoutMs: 2000,
  admissionGrants: false,
};
const KEY_ID = '7d1f6c2e-3c4b-4e0a-9a51-2b8f1c0e6d42';
const USER_ID = '0b8e7a52-6f0c-4a55-b5a4-1c0d6d1e2f3a';

function keyPrincipal(rpm: number | null, tpm: number | null): Principal {
  return {
    userId: USER_ID,
    email: null,
    role: 'user',
    method: 'api_key',
    apiKeyId: KEY_ID,
    apiKey: { rpm, tpm, allowedModels: null, maxPriority: 'normal' },
  };
}

const chat: Required<RateLimitOptions> = {
  name: 'chat',
  limit: 5,
  windowSeconds: 10,
  algorithm: 'token_bucket',
  burst: 8,
  per: 'principal',
};
const login: Required<RateLimitOptions> = {
  name: 'login',
  limit: 3,
  windowSeconds: 60,
  algorithm: 'sliding_window',
  burst: 3,
  per: 'ip',
};

describe('applicablePolicies', () => {
  it('API key caller: key (default rpm) AND user AND ip, keyed by ids, never by key material', () => {
    const p = applicablePolicies({ config, principal: keyPrincipal(null, null), clientIp: '203.0.113.9' });
    expect(p.map((x) => [x.name, x.limit, x.subject, x.keys])).toEqual([
      ['key', 60, `key:${KEY_ID}`, [`rl:{key:${KEY_ID}}:key:sw`]],
      ['user', 600, `user:${USER_ID}`, [`rl:{user:${USER_ID}}:user:sw`]],
      ['ip', 1000, 'ip:203.0.113.9', ['rl:{ip:203.0.113.9}:ip:sw']],
    ]);
  });

  it("a key's own rpm overrides the default; a tpm adds the check-only token budget", () => {
    const p = applicablePolicies({ config, principal: keyPrincipal(50, 10_000), clientIp: '203.0.113.9' });
    expect(p.map((x) => [x.name, x.limit, x.cost, x.unit])).toEqual([
      ['key', 50, 1, 'requests'],
      ['tpm', 10_000, 0, 'tokens'],
      ['user', 600, 1, 'requests'],
      ['ip', 1000, 1, 'requests'],
    ]);
    expect(p[1]!.keys).toEqual([`rl:{key:${KEY_ID}}:tpm:log`, `rl:{key:${KEY_ID}}:tpm:sum`]);
  });

  it('JWT caller: user and ip; unauthenticated: ip only', () => {
    const jwt: Principal = { ...keyPrincipal(null, null), method: 'jwt', apiKeyId: null, apiKey: null };
    expect(applicablePolicies({ config, principal: jwt, clientIp: '::1' }).map((x) => x.name)).toEqual([
      'user',
      'ip',
    ]);
    expect(applicablePolicies({ config, principal: undefined, clientIp: '::1' }).map((x) => x.name)).toEqual([
      'ip',
    ]);
  });

  it('route policies count the key (else user, else ip) or the ip; skips and overrides apply to builtins', () => {
    const p = applicablePolicies({
      config,
      principal: keyPrincipal(null, null),
      clientIp: '2001:db8::7',
      routes: [chat, login],
      skip: new Set(['user']),
      overrides: { ip: { limit: 10, ttlMs: 1000 } },
    });
    expect(p.map((x) => [x.name, x.algorithm, x.limit, x.windowMs, x.burst, x.subject])).toEqual([
      ['key', 'sliding_window', 60, 60_000, 60, `key:${KEY_ID}`],
      ['ip', 'sliding_window', 10, 1000, 10, 'ip:2001:db8::/64'],
      ['chat', 'token_bucket', 5, 10_000, 8, `key:${KEY_ID}`],
      ['login', 'sliding_window', 3, 60_000, 3, 'ip:2001:db8::/64'],
    ]);
    expect(p[2]!.keys).toEqual([`rl:{key:${KEY_ID}}:route:chat:tb`]);
  });

  it('the IP policy may be a token bucket', () => {
    const p = applicablePolicies({
      config: { ...config, ipAlgorithm: 'token_bucket' },
      principal: undefined,
      clientIp: '1.2.3.4',
    });
    expect(p[0]).toMatchObject({
      name: 'ip',
      algorithm: 'token_bucket',
      limit: 1000,
      burst: 100,
      keys: ['rl:{ip:1.2.3.4}:ip:tb'],
    });
  });
});

describe('admin subjects', () => {
  it('parses key/user uuids and IP addresses; rejects the rest', () => {
    expect(parseSubject(`key:${KEY_ID.toUpperCase()}`)).toEqual({
      kind: 'key',
      id: KEY_ID,
      text: `key:${KEY_ID}`,
    });
    expect(parseSubject(`user:${USER_ID}`)?.text).toBe(`user:${USER_ID}`);
    expect(parseSubject('ip:203.0.113.9')?.text).toBe('ip:203.0.113.9');
    expect(parseSubject('ip:2001:db8::1')?.text).toBe('ip:2001:db8::/64');
    expect(parseSubject('ip:2001:db8::/64')?.text).toBe('ip:2001:db8::/64');
    for (const bad of ['key:abc', 'fg_abcdef', 'user:', 'ip:1.2.3', 'team:x', ''])
      expect(parseSubject(bad)).toBeNull();
  });

  it('reports the same keys the guard writes, and resets every algorithm and route', () => {
    const subject = parseSubject(`key:${KEY_ID}`)!;
    const reported = subjectPolicies(config, subject, [chat, login], { rpm: 50, tpm: 1000 });
    expect(reported.map((p) => [p.name, p.limit])).toEqual([
      ['key', 50],
      ['tpm', 1000],
      ['chat', 5],
    ]);
    const written = applicablePolicies({
      config,
      principal: keyPrincipal(50, 1000),
      clientIp: '1.1.1.1',
      routes: [chat],
    });
    for (const p of reported) expect(written.find((w) => w.name === p.name)!.keys).toEqual(p.keys);
    const keys = subjectKeys(subject, [chat]);
    expect(keys).toEqual(
      expect.arrayContaining([
        `rl:{key:${KEY_ID}}:key:sw`,
        `rl:{key:${KEY_ID}}:key:tb`,
        `rl:{key:${KEY_ID}}:tpm:log`,
        `rl:{key:${KEY_ID}}:tpm:sum`,
        `rl:{key:${KEY_ID}}:route:chat:tb`,
        `rl:{key:${KEY_ID}}:key:sb`,
        `rl:{key:${KEY_ID}}:route:chat:sb`,
      ]),
    );
  });
});

describe('sliding windows: exact log up to SLIDING_EXACT_MAX, sub-buckets above', () => {
  it('limit 1,000 keeps the exact log (:sw); 1,001 is a sub-bucket window (:sb) on the same subject tag', () => {
    const small = applicablePolicies({
      config,
      principal: keyPrincipal(SLIDING_EXACT_MAX, null),
      clientIp: '1.1.1.1',
    });
    const large = applicablePolicies({
      config,
      principal: keyPrincipal(SLIDING_EXACT_MAX + 1, null),
      clientIp: '1.1.1.1',
    });
    expect([small[0]!.kind, small[0]!.keys]).toEqual([KIND_SLIDING_WINDOW, [`rl:{key:${KEY_ID}}:key:sw`]]);
    expect([large[0]!.kind, large[0]!.keys]).toEqual([KIND_SLIDING_BUCKETS, [`rl:{key:${KEY_ID}}:key:sb`]]);
    expect(large[0]!.algorithm).toBe('sliding_window');
    // a token bucket never changes with the limit
    expect(
      routePolicy({ ...chat, algorithm: 'token_bucket', limit: 50_000, burst: 100 }, 'ip:1.1.1.1').keys,
    ).toEqual(['rl:{ip:1.1.1.1}:route:chat:tb']);
  });
});

describe('team policies', () => {
  const TEAM_ID = '3f6d2a1b-8c4e-4b7a-9e21-5d0c7f1a2b3c';
  const teamPrincipal = (rpm: number | null, tpm: number | null): Principal => ({
    ...keyPrincipal(null, 500),
    team: { id: TEAM_ID, role: 'member', rpm, tpm },
  });

  it("a key of a team with limits: the team's rpm and tpm join the same decision, after the user's, on the team's subject", () => {
    const p = applicablePolicies({ config, principal: teamPrincipal(3, 1000), clientIp: '203.0.113.9' });
    expect(p.map((x) => `${x.name}@${x.subject}`)).toEqual([
      `key@key:${KEY_ID}`,
      `tpm@key:${KEY_ID}`,
      `user@user:${USER_ID}`,
      `team@team:${TEAM_ID}`,
      `team_tpm@team:${TEAM_ID}`,
      'ip@ip:203.0.113.9',
    ]);
    const team = p.find((x) => x.name === 'team')!;
    expect(team).toMatchObject({ limit: 3, windowMs: 60_000, cost: 1, unit: 'requests' });
    expect(team.keys).toEqual([`rl:{team:${TEAM_ID}}:team:sw`]);
    const tpm = p.find((x) => x.name === 'team_tpm')!;
    expect(tpm).toMatchObject({ limit: 1000, cost: 0, unit: 'tokens' });
    expect(tpm.keys).toEqual([`rl:{team:${TEAM_ID}}:tpm:log`, `rl:{team:${TEAM_ID}}:tpm:sum`]);
  });

  it('a team without limits adds no policy; only the set one is added', () => {
    const names = (rpm: number | null, tpm: number | null) =>
      applicablePolicies({ config, principal: teamPrincipal(rpm, tpm), clientIp: '203.0.113.9' }).map(
        (x) => x.name,
      );
    expect(names(null, null)).toEqual(['key', 'tpm', 'user', 'ip']);
    expect(names(5, null)).toEqual(['key', 'tpm', 'user', 'team', 'ip']);
    expect(names(null, 7)).toEqual(['key', 'tpm', 'user', 'team_tpm', 'ip']);
  });

  it('team:{id} is an admin subject: its own policies (from the team limits) and keys, nothing else', () => {
    const subject = parseSubject(`team:${TEAM_ID.toUpperCase()}`)!;
    expect(subject).toEqual({ kind: 'team', id: TEAM_ID, text: `team:${TEAM_ID}` });
    expect(parseSubject('team:not-a-uuid')).toBeNull();
    expect(subjectPolicies(config, subject, [chat], { rpm: 3, tpm: 9 }).map((x) => x.name)).toEqual([
      'team',
      'team_tpm',
    ]);
    expect(subjectPolicies(config, subject, [chat], { rpm: null, tpm: null })).toEqual([]);
    const keys = subjectKeys(subject, [chat]);
    expect(keys).toContain(`rl:{team:${TEAM_ID}}:team:sw`);
    expect(keys).toContain(`rl:{team:${TEAM_ID}}:tpm:sum`);
    expect(keys.every((k) => k.startsWith(`rl:{team:${TEAM_ID}}:`))).toBe(true);
  });
});

describe('principalPolicies', () => {
  const routes = [chat];
  it('same principal and inputs: the same Policy objects, in a fresh array each time', () => {
    const p = keyPrincipal(30, 1000);
    const input = { config, principal: p, clientIp: '10.0.0.1', routes };
    const a = principalPolicies(input);
    const b = principalPolicies({ ...input });
    expect(a).toEqual(applicablePolicies(input));
    expect(b).not.toBe(a);
    b.forEach((policy, i) => expect(policy).toBe(a[i]));
    b.push(a[0]!);
    expect(principalPolicies(input)).toHaveLength(a.length);
  });

  it('any input that changed gives the policies of the new inputs', () => {
    const p = keyPrincipal(30, null);
    const base = { config, principal: p, clientIp: '10.0.0.1', routes };
    principalPolicies(base);
    const changes: PolicyInputLike[] = [
      { ...base, clientIp: '10.0.0.2' },
      { ...base, routes: [login] },
      { ...base, config: { ...config, userRpm: 7 } },
      { ...base, skip: new Set(['ip']) },
      { ...base, overrides: { key: { limit: 9 } } },
    ];
    for (const input of changes) {
      expect(principalPolicies(input)).toEqual(applicablePolicies(input));
    }
    p.apiKey!.rpm = 12;
    expect(principalPolicies(base)).toEqual(applicablePolicies(base));
    expect(principalPolicies(base)[0]!.limit).toBe(12);
    p.team = { id: 'team-1', name: 't', role: 'member', rpm: 5, tpm: null } as Principal['team'];
    expect(principalPolicies(base).map((x) => x.name)).toContain('team');
    p.team!.rpm = 6;
    expect(principalPolicies(base).find((x) => x.name === 'team')!.limit).toBe(6);
  });
});
type PolicyInputLike = Parameters<typeof principalPolicies>[0];
