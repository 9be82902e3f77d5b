import type { RateLimitConfig } from '../config/app-config.js';
import type { Principal } from '../common/principal.js';
import { ipRateLimitSubject, normaliseIp } from './client-ip.service.js';
import {
  KIND_SPEND_BUDGET,
  KIND_TOKEN_BUCKET,
  KIND_TOKEN_BUDGET,
  KIND_SLIDING_BUCKETS,
  slidingKind,
  type PolicyKind,
} from './rate-limit.scripts.js';
import type { RateLimitAlgorithm, RateLimitOptions, SpendReservation } from './rate-limit.types.js';

export type { SpendReservation };

/**
 * Which policies apply to a request, and where their state lives. Pure: the guard, the auth-failure
 * hook, the admin API and the unit tests all build policies here.
 */

export const MINUTE_MS = 60_000;

export interface Policy {
  name: string;
  algorithm: RateLimitAlgorithm;
  kind: PolicyKind;
  unit: 'requests' | 'tokens' | 'micro_usd';
  /** A spend budget's period (`day`, `week`, `month`, `total`; unit micro_usd only). */
  period?: string;
  /** Requests (tokens for the TPM budget) per window; token bucket: refill per window. */
  limit: number;
  windowMs: number;
  /** Token bucket capacity; equals limit otherwise. */
  burst: number;
  /** What one request takes: 1, or 0 for the check-only TPM budget. */
  cost: number;
  /** `key:<api_key_id>`, `user:<user_id>`, `team:<team_id>` or `ip:<address or /64>`. */
  subject: string;
  /** Logical store keys (the store adds the deployment prefix). */
  keys: string[];
}

export type Subject = { kind: 'key' | 'user' | 'team' | 'ip'; id: string; text: string };

/** Per-policy overrides from throttler metadata (`@Throttle({ key: { limit, ttl } })`). */
export type PolicyOverrides = Partial<Record<'key' | 'user' | 'ip', { limit?: number; ttlMs?: number }>>;

export interface PolicyInput {
  config: RateLimitConfig;
  principal: Principal | undefined;
  clientIp: string;
  routes?: readonly Required<RateLimitOptions>[];
  overrides?: PolicyOverrides;
  /** Builtin policies switched off for this route (`@SkipThrottle({ ip: true })`). */
  skip?: ReadonlySet<string>;
}

const ALG_SHORT: Record<RateLimitAlgorithm, string> = { sliding_window: 'sw', token_bucket: 'tb' };

/** A sliding window above SLIDING_EXACT_MAX is a sub-bucket window (rate-limit.scripts.ts). */
function kindOf(algorithm: RateLimitAlgorithm, limit: number): PolicyKind {
  return algorithm === 'token_bucket' ? KIND_TOKEN_BUCKET : slidingKind(limit);
}

/**
 * The hash-tagged head of every key of a subject (`rl:{key:<id>}`): Redis Cluster puts all of one
 * subject's keys in one slot (docs/scaling.md, "Redis Cluster"), whatever the policy or algorithm.
 */
export function subjectTag(subject: string): string {
  return `rl:{${subject}}`;
}

/**
 * State keys of a request policy: the algorithm is part of the key, so switching it never collides;
 * so is the sliding window's structure (`sw` the exact log, `sb` the sub-bucket window, a hash).
 */
export function policyKey(
  name: string,
  algorithm: RateLimitAlgorithm,
  subject: string,
  route = false,
  buckets = false,
): string {
  const alg = buckets && algorithm === 'sliding_window' ? 'sb' : ALG_SHORT[algorithm];
  return `${subjectTag(subject)}:${route ? `route:${name}` : name}:${alg}`;
}

export function budgetKeys(subject: string): [string, string] {
  const tag = subjectTag(subject);
  return [`${tag}:tpm:log`, `${tag}:tpm:sum`];
}

export function requestPolicy(
  name: string,
  algorithm: RateLimitAlgorithm,
  limit: number,
  windowMs: number,
  burst: number,
  subject: string,
  route = false,
): Policy {
  const kind = kindOf(algorithm, limit);
  return {
    name,
    algorithm,
    kind,
    unit: 'requests',
    limit,
    windowMs,
    burst: algorithm === 'token_bucket' ? burst : limit,
    cost: 1,
    subject,
    keys: [policyKey(name, algorithm, subject, route, kind === KIND_SLIDING_BUCKETS)],
  };
}

export function tokenBudgetPolicy(tpm: number, subject: string, name = 'tpm'): Policy {
  return {
    name,
    algorithm: 'sliding_window',
    kind: KIND_TOKEN_BUDGET,
    unit: 'tokens',
    limit: tpm,
    windowMs: MINUTE_MS,
    burst: tpm,
    cost: 0,
    subject,
    keys: budgetKeys(subject),
  };
}

/** The counter of a subject's spend budget for one period (same hash slot as its rate limits). */
export function spendBudgetKey(subject: string, periodId: string): string {
  return `${subjectTag(subject)}:budget:${periodId}`;
}

/** The reservations of a subject's spend counter for one period (a sorted set, same hash slot). */
export function spendReservationsKey(subject: string, periodId: string): string {
  return `${spendBudgetKey(subject, periodId)}:res`;
}

/**
 * Policy `key_budget` / `user_budget` / `team_budget`: the reservation, decided with the rate limits
 * (KEYS counter, reservations; `burst` carries the reservation's TTL in ms).
 */
export function spendBudgetPolicy(r: SpendReservation): Policy {
  const kind = r.subject.slice(0, r.subject.indexOf(':'));
  return {
    name: `${kind}_budget`,
    algorithm: 'sliding_window',
    kind: KIND_SPEND_BUDGET,
    unit: 'micro_usd',
    period: r.period,
    limit: r.limitMicros,
    windowMs: Math.max(0, Math.ceil(r.resetMs)),
    burst: Math.max(1, Math.ceil(r.reservationTtlMs)),
    cost: Math.max(0, Math.floor(r.reserveMicros)),
    subject: r.subject,
    keys: [spendBudgetKey(r.subject, r.periodId), spendReservationsKey(r.subject, r.periodId)],
  };
}

type Override = { limit?: number; ttlMs?: number } | undefined;

export function keyPolicy(
  config: RateLimitConfig,
  subject: string,
  rpm: number | null,
  o?: Override,
): Policy {
  return requestPolicy(
    'key',
    'sliding_window',
    o?.limit ?? rpm ?? config.keyRpm,
    o?.ttlMs ?? MINUTE_MS,
    0,
    subject,
  );
}

export function userPolicy(config: RateLimitConfig, subject: string, o?: Override): Policy {
  return requestPolicy(
    'user',
    'sliding_window',
    o?.limit ?? config.userRpm,
    o?.ttlMs ?? MINUTE_MS,
    0,
    subject,
  );
}

/** A team's own requests per minute (policy `team`), shared by every key of the team. */
export function teamPolicy(subject: string, rpm: number): Policy {
  return requestPolicy('team', 'sliding_window', rpm, MINUTE_MS, 0, subject);
}

/** A team's tokens per minute (policy `team_tpm`): the TPM budget, over the team's subject. */
export function teamTokenPolicy(subject: string, tpm: number): Policy {
  return tokenBudgetPolicy(tpm, subject, 'team_tpm');
}

/** A team's policies (none when it sets no limits). */
export function teamPolicies(subject: string, limits: { rpm: number | null; tpm: number | null }): Policy[] {
  const policies: Policy[] = [];
  if (limits.rpm !== null && limits.rpm > 0) policies.push(teamPolicy(subject, limits.rpm));
  if (limits.tpm !== null && limits.tpm > 0) policies.push(teamTokenPolicy(subject, limits.tpm));
  return policies;
}

export function ipPolicy(config: RateLimitConfig, subject: string, o?: Override): Policy {
  return requestPolicy(
    'ip',
    config.ipAlgorithm,
    o?.limit ?? config.ipRpm,
    o?.ttlMs ?? MINUTE_MS,
    config.ipBurst,
    subject,
  );
}

export function routePolicy(route: Required<RateLimitOptions>, subject: string): Policy {
  return requestPolicy(
    route.name,
    route.algorithm,
    route.limit,
    route.windowSeconds * 1000,
    route.burst,
    subject,
    true,
  );
}

export function ipSubject(clientIp: string): string {
  return `ip:${ipRateLimitSubject(clientIp)}`;
}

/**
 * Every policy a request must pass, in reporting order: key, tpm, user, team, team_tpm, ip, then
 * route policies. The team's come from the principal (its API key's team, or a JWT user's), so they
 * are decided in the same atomic step as the key's and the user's: the tightest applies.
 */
export function applicablePolicies(input: PolicyInput): Policy[] {
  const { config, principal, overrides = {}, skip = new Set<string>() } = input;
  const ip = ipSubject(input.clientIp);
  const policies: Policy[] = [];
  const keySubject = principal?.apiKeyId ? `key:${principal.apiKeyId}` : null;
  if (keySubject && !skip.has('key')) {
    policies.push(keyPolicy(config, keySubject, principal?.apiKey?.rpm ?? null, overrides.key));
  }
  const tpm = principal?.apiKey?.tpm;
  if (keySubject && tpm !== null && tpm !== undefined && tpm > 0 && !skip.has('tpm')) {
    policies.push(tokenBudgetPolicy(tpm, keySubject));
  }
  if (principal && !skip.has('user'))
    policies.push(userPolicy(config, `user:${principal.userId}`, overrides.user));
  const team = principal?.team;
  if (team && !skip.has('team')) policies.push(...teamPolicies(`team:${team.id}`, team));
  if (!skip.has('ip')) policies.push(ipPolicy(config, ip, overrides.ip));
  for (const route of input.routes ?? []) {
    const subject = route.per === 'ip' ? ip : (keySubject ?? (principal ? `user:${principal.userId}` : ip));
    policies.push(routePolicy(route, subject));
  }
  return policies;
}

/** The last policies computed for a principal, with every input they were computed from. */
interface PolicyMemo {
  config: RateLimitConfig;
  clientIp: string;
  routes: PolicyInput['routes'];
  overrides: PolicyInput['overrides'];
  skip: PolicyInput['skip'];
  apiKeyId: string | null;
  userId: string;
  rpm: number | null | undefined;
  tpm: number | null | undefined;
  teamId: string | undefined;
  teamRpm: number | null | undefined;
  teamTpm: number | null | undefined;
  policies: readonly Policy[];
}
const policyMemo = new WeakMap<Principal, PolicyMemo>();

/**
 * `applicablePolicies`, remembered per principal (the credential cache hands out the same principal
 * object for an API key from one request to the next): while every input it reads is the same (by
 * identity for the config and the route's metadata, by value for the rest), the same Policy objects
 * come back, in a fresh array the caller may extend. Policies are never mutated.
 */
export function principalPolicies(input: PolicyInput): Policy[] {
  const principal = input.principal;
  if (!principal) return applicablePolicies(input);
  const team = principal.team ?? undefined;
  const m = policyMemo.get(principal);
  if (
    m !== undefined &&
    m.config === input.config &&
    m.clientIp === input.clientIp &&
    m.routes === input.routes &&
    m.overrides === input.overrides &&
    m.skip === input.skip &&
    m.apiKeyId === principal.apiKeyId &&
    m.userId === principal.userId &&
    m.rpm === principal.apiKey?.rpm &&
    m.tpm === principal.apiKey?.tpm &&
    m.teamId === team?.id &&
    m.teamRpm === team?.rpm &&
    m.teamTpm === team?.tpm
  )
    return m.policies.slice();
  const policies = applicablePolicies(input);
  policyMemo.set(principal, {
    config: input.config,
    clientIp: input.clientIp,
    routes: input.routes,
    overrides: input.overrides,
    skip: input.skip,
    apiKeyId: principal.apiKeyId,
    userId: principal.userId,
    rpm: principal.apiKey?.rpm,
    tpm: principal.apiKey?.tpm,
    teamId: team?.id,
    teamRpm: team?.rpm,
    teamTpm: team?.tpm,
    policies,
  });
  return policies.slice();
}

/** Users, teams and API keys have uuid ids (docs/CONVENTIONS.md). */
const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Parses an admin subject (`key:{id}`, `user:{id}`, `team:{id}`, `ip:{address}`), or null when malformed. */
export function parseSubject(text: string): Subject | null {
  const idx = text.indexOf(':');
  if (idx <= 0) return null;
  const kind = text.slice(0, idx);
  const id = text.slice(idx + 1);
  if ((kind === 'key' || kind === 'user' || kind === 'team') && ID.test(id))
    return { kind, id: id.toLowerCase(), text: `${kind}:${id.toLowerCase()}` };
  if (kind === 'ip') {
    const ip = normaliseIp(id.replace(/\/64$/, ''));
    if (!ip) return null;
    return { kind: 'ip', id: ipRateLimitSubject(ip), text: `ip:${ipRateLimitSubject(ip)}` };
  }
  return null;
}

/**
 * The policies the admin API reports for a subject; `keyLimits` are the API key's own settings (or
 * the team's, for a team subject).
 */
export function subjectPolicies(
  config: RateLimitConfig,
  subject: Subject,
  routes: readonly Required<RateLimitOptions>[],
  keyLimits: { rpm: number | null; tpm: number | null } | null,
): Policy[] {
  const policies: Policy[] = [];
  if (subject.kind === 'key') {
    policies.push(keyPolicy(config, subject.text, keyLimits?.rpm ?? null));
    if (keyLimits?.tpm) policies.push(tokenBudgetPolicy(keyLimits.tpm, subject.text));
  } else if (subject.kind === 'team') {
    // A team has only its own policies (route policies count keys, users or IPs, never a team).
    return teamPolicies(subject.text, keyLimits ?? { rpm: null, tpm: null });
  } else if (subject.kind === 'user') {
    policies.push(userPolicy(config, subject.text));
  } else {
    policies.push(ipPolicy(config, subject.text));
  }
  for (const route of routes) {
    if (subject.kind !== 'ip' && route.per === 'ip') continue;
    policies.push(routePolicy(route, subject.text));
  }
  return policies;
}

/** Every key a subject may own (reset deletes them all, whatever the current configuration). */
export function subjectKeys(subject: Subject, routes: readonly Required<RateLimitOptions>[]): string[] {
  const all = (name: string, route = false) => [
    policyKey(name, 'sliding_window', subject.text, route),
    policyKey(name, 'sliding_window', subject.text, route, true),
    policyKey(name, 'token_bucket', subject.text, route),
  ];
  const keys: string[] = [];
  if (subject.kind === 'key') keys.push(...all('key'), ...budgetKeys(subject.text));
  else if (subject.kind === 'team') return [...all('team'), ...budgetKeys(subject.text)];
  else if (subject.kind === 'user') keys.push(...all('user'));
  else keys.push(...all('ip'));
  for (const route of routes) keys.push(...all(route.name, true));
  return keys;
}
