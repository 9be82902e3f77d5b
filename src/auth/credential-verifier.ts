import { Inject, Injectable, Logger } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { DataSource } from 'typeorm';
import { ApiError } from '../common/api-error.js';
import { isConnectivityError } from '../common/error-response.js';
import type { Principal, PrincipalBudget, PrincipalTeam, Priority, Role } from '../common/principal.js';
import {
  intersectAllowedModels,
  tighterPriority,
  type BudgetPeriod,
  type TeamRole,
} from './domain/team-rules.js';
import { hashApiKey, isApiKeyFormat } from './api-key-format.js';
import { CREDENTIAL_CACHE_TTL_MS, CredentialCache, type CachedKey } from './credential-cache.js';
import type { JwtStrategy } from './jwt.strategy.js';
import { roleWithin } from './roles.js';
import { UsageRecorder } from './usage-recorder.js';
import { UsersService } from './users.service.js';
import { FloodgateMetrics } from '../metrics/floodgate-metrics.js';

export const JWT_STRATEGY = Symbol('JWT_STRATEGY');

/** The one query behind an API key: an equality on the unique hash index, joined to its owner. */
export const KEY_LOOKUP_SQL = `SELECT k.id, k.user_id, k.role, k.rpm, k.tpm, k.allowed_models, k.max_priority,
       k.expires_at, k.revoked_at, u.email, u.role AS owner_role, u.disabled,
       k.team_id, u.team_id AS owner_team_id, u.team_role, t.rpm AS team_rpm, t.tpm AS team_tpm, t.weight AS team_weight,
       t.allowed_models AS team_allowed_models, t.max_priority AS team_max_priority,
       k.budget_limit_micros, k.budget_period, u.budget_limit_micros AS user_budget_limit_micros,
       u.budget_period AS user_budget_period, t.budget_limit_micros AS team_budget_limit_micros,
       t.budget_period AS team_budget_period, k.capture_bodies
  FROM api_keys k JOIN users u ON u.id = k.user_id LEFT JOIN teams t ON t.id = k.team_id
 WHERE k.key_hash = $1`;

/** A JWT user's team (only on a cache miss of a subject in a team). */
export const TEAM_LIMITS_SQL = `SELECT id, rpm, tpm, weight, budget_limit_micros, budget_period FROM teams WHERE id = $1`;

interface KeyRow {
  id: string;
  user_id: string;
  role: Role;
  rpm: number | null;
  tpm: number | null;
  allowed_models: string[] | null;
  max_priority: Priority;
  expires_at: Date | null;
  revoked_at: Date | null;
  email: string | null;
  owner_role: Role;
  disabled: boolean;
  team_id: string | null;
  owner_team_id: string | null;
  team_role: TeamRole | null;
  team_rpm: number | null;
  team_tpm: number | null;
  team_weight: number | null;
  team_allowed_models: string[] | null;
  team_max_priority: Priority | null;
  budget_limit_micros: string | null;
  budget_period: BudgetPeriod | null;
  user_budget_limit_micros: string | null;
  user_budget_period: BudgetPeriod | null;
  team_budget_limit_micros: string | null;
  team_budget_period: BudgetPeriod | null;
  capture_bodies: boolean;
}

/** A budget's two columns (bigint µ$ as text, period) as the principal carries it; null: none. */
export function budgetOf(
  micros: string | number | null,
  period: BudgetPeriod | null,
): PrincipalBudget | null {
  return micros === null || period === null ? null : { limitMicros: Number(micros), period };
}

const MAX_TOKEN_LENGTH = 8192;

const missing = (): ApiError =>
  ApiError.unauthorized('Authorization header is missing', 'missing_credentials');
const invalidKey = (): ApiError => ApiError.unauthorized('Invalid API key', 'invalid_api_key');
const expiredKey = (): ApiError => ApiError.unauthorized('API key has expired', 'api_key_expired');
const disabledUser = (): ApiError => ApiError.unauthorized('User is disabled', 'user_disabled');

/**
 * Credentials → Principal. Accepts `x-api-key: fg_…`, `Authorization: Bearer fg_…` or
 * `Authorization: Bearer <jwt>` (x-api-key wins when both are sent). API keys: format check, SHA-256,
 * then the in-process cache (no I/O) or one indexed query. JWTs: passport-jwt, then the subject's
 * user row (cached the same way). Every failure is a 401 with a fixed message; credentials never
 * appear in a message or a log line.
 */
@Injectable()
export class CredentialVerifier {
  private readonly logger = new Logger('CredentialVerifier');

  constructor(
    private readonly dataSource: DataSource,
    private readonly cache: CredentialCache,
    private readonly usage: UsageRecorder,
    private readonly users: UsersService,
    @Inject(JWT_STRATEGY) private readonly jwt: JwtStrategy | null,
    private readonly metrics: FloodgateMetrics,
  ) {}

  private staleSince: number | null = null;
  /** Until then, a credential with a stale entry is answered from it without asking Postgres. */
  private unreachableUntil = 0;

  /**
   * Postgres could not be asked about a credential the cache verified recently: the cached answer is
   * used (bounded by CREDENTIAL_MAX_STALENESS_MS; revocations arrive through pub/sub and drop the
   * entry). One log line per outage, a metric per request.
   */
  private servedStale(method: 'api_key' | 'jwt', err: unknown): void {
    this.metrics.staleCredentials.labels(method).inc();
    const now = Date.now();
    // Postgres just failed: for one cache TTL, recently verified callers skip the lookup (no waiting
    // on a frozen Postgres, no connection storm on a refusing one); then the next lookup tries again.
    if (err !== null) this.unreachableUntil = now + CREDENTIAL_CACHE_TTL_MS;
    if (err !== null && (this.staleSince === null || now - this.staleSince > 60_000)) {
      this.staleSince = now;
      this.logger.warn(
        `Postgres is unreachable (${err instanceof Error ? err.message : 'lookup failed'}): accepting credentials verified within the last ${Math.round(
          this.cache.maxStalenessMs / 1000,
        )} s from the cache; unknown credentials get 503`,
      );
    }
  }

  /** Resolves the request's credentials to a principal (does not set it on the request). */
  async authenticate(request: Pick<FastifyRequest, 'headers'> & Partial<FastifyRequest>): Promise<Principal> {
    const headers = request.headers;
    const apiKeyHeader = headers['x-api-key'];
    if (apiKeyHeader !== undefined) {
      if (typeof apiKeyHeader !== 'string')
        throw ApiError.unauthorized('Send exactly one x-api-key header', 'invalid_api_key');
      return this.verifyApiKey(apiKeyHeader.trim());
    }
    const authorization = headers.authorization;
    if (!authorization || authorization.trim() === '') throw missing();
    const space = authorization.indexOf(' ');
    const scheme = space > 0 ? authorization.slice(0, space) : authorization;
    const token = space > 0 ? authorization.slice(space + 1).trim() : '';
    if (scheme.toLowerCase() !== 'bearer' || token === '' || token.includes(' ')) {
      throw ApiError.unauthorized(
        'Authorization header must be "Bearer <API key or token>"',
        'invalid_authorization',
      );
    }
    if (token.startsWith('fg_')) return this.verifyApiKey(token);
    if (!this.jwt) {
      throw ApiError.unauthorized(
        'JWT authentication is not configured on this gateway: use an API key',
        'jwt_not_configured',
      );
    }
    if (token.length > MAX_TOKEN_LENGTH) throw ApiError.unauthorized('Malformed token', 'invalid_token');
    return this.verifyJwt(request, token);
  }

  /**
   * The principal of an API key the in-process cache vouches for right now, answered without a
   * promise (the relay's hot path: the guard chain goes on in the same tick). undefined → ask
   * `authenticate`, which gives the precise answer for everything else (a cache miss, an expired
   * key, a JWT, a malformed header).
   */
  cachedPrincipal(headers: FastifyRequest['headers']): Principal | undefined {
    let raw: string;
    const apiKeyHeader = headers['x-api-key'];
    if (apiKeyHeader !== undefined) {
      if (typeof apiKeyHeader !== 'string') return undefined;
      raw = apiKeyHeader.trim();
    } else {
      const authorization = headers.authorization;
      if (authorization === undefined) return undefined;
      const space = authorization.indexOf(' ');
      if (space <= 0 || authorization.slice(0, space).toLowerCase() !== 'bearer') return undefined;
      raw = authorization.slice(space + 1).trim();
    }
    if (!isApiKeyFormat(raw)) return undefined;
    const cached = this.cache.keys.get(hashApiKey(raw));
    if (cached === undefined) return undefined;
    const now = Date.now();
    if (cached.expiresAtMs !== null && cached.expiresAtMs <= now) return undefined;
    this.usage.touchCached(cached, now);
    return cached.principal;
  }

  async verifyApiKey(raw: string): Promise<Principal> {
    if (!isApiKeyFormat(raw)) throw invalidKey();
    const hash = hashApiKey(raw);
    const now = Date.now();
    const cached = this.cache.keys.get(hash);
    if (cached) {
      if (cached.expiresAtMs !== null && cached.expiresAtMs <= now) throw expiredKey();
      this.usage.touchCached(cached, now);
      return cached.principal;
    }
    const generation = this.cache.generation;
    let rows: KeyRow[];
    try {
      const recent = this.cache.staleKey(hash);
      if (recent && now < this.unreachableUntil) {
        if (recent.expiresAtMs !== null && recent.expiresAtMs <= now) throw expiredKey();
        this.servedStale('api_key', null);
        this.usage.touchCached(recent, now);
        return recent.principal;
      }
      const lookup = this.dataSource.query(KEY_LOOKUP_SQL, [hash]) as Promise<KeyRow[]>;
      rows = recent ? await withinDeadline(lookup) : await lookup;
    } catch (err) {
      const stale = isConnectivityError(err) ? this.cache.staleKey(hash) : undefined;
      if (!stale) throw err;
      if (stale.expiresAtMs !== null && stale.expiresAtMs <= now) throw expiredKey();
      this.servedStale('api_key', err);
      this.usage.touchCached(stale, now);
      return stale.principal;
    }
    const row = rows[0];
    if (!row) throw invalidKey();
    if (row.revoked_at) throw ApiError.unauthorized('API key has been revoked', 'api_key_revoked');
    if (row.disabled) throw disabledUser();
    const expiresAtMs = row.expires_at ? new Date(row.expires_at).getTime() : null;
    if (expiresAtMs !== null && expiresAtMs <= now) throw expiredKey();
    const principal: Principal = deepFreeze({
      userId: row.user_id,
      email: row.email,
      // Keys are capped when their owner's role is lowered; this covers the instant in between.
      role: roleWithin(row.role, row.owner_role) ? row.role : row.owner_role,
      method: 'api_key',
      apiKeyId: row.id,
      // The team's allowed models and ceiling fold into the key's (the tighter applies), so the
      // relay's one check of principal.apiKey covers both (docs/auth.md "Teams").
      apiKey: {
        rpm: row.rpm,
        tpm: row.tpm,
        allowedModels:
          row.team_id === null
            ? row.allowed_models
            : intersectAllowedModels(row.allowed_models, row.team_allowed_models),
        maxPriority:
          row.team_max_priority === null
            ? row.max_priority
            : tighterPriority(row.max_priority, row.team_max_priority),
        budget: budgetOf(row.budget_limit_micros, row.budget_period),
        captureBodies: row.capture_bodies === true,
      },
      team: keyTeam(row),
      userBudget: budgetOf(row.user_budget_limit_micros, row.user_budget_period),
    });
    const entry: CachedKey = {
      keyId: row.id,
      userId: row.user_id,
      expiresAtMs,
      principal,
      usageKeys: [`u:${row.user_id}`, `k:${row.id}`],
    };
    this.cache.fillKey(hash, entry, generation);
    this.usage.touchCached(entry, now);
    return principal;
  }

  async verifyJwt(
    request: Pick<FastifyRequest, 'headers'> & Partial<FastifyRequest>,
    token: string,
  ): Promise<Principal> {
    const identity = await this.jwt!.verify(request.headers, token);
    let subject = this.cache.subjects.get(identity.subject);
    if (!subject) {
      const generation = this.cache.generation;
      try {
        const recent = this.cache.staleSubject(identity.subject);
        if (recent && Date.now() < this.unreachableUntil) throw UNREACHABLE_RECENTLY;
        const resolving = this.users.resolveJwtSubject(identity, request);
        const resolved = recent ? await withinDeadline(resolving) : await resolving;
        const user = resolved.user;
        const team = user.teamId ? await this.teamOf(user.teamId, user.teamRole ?? 'member') : null;
        subject = {
          userId: user.id,
          email: user.email,
          role: user.role,
          disabled: user.disabled,
          team,
          userBudget: budgetOf(user.budgetLimitMicros ?? null, user.budgetPeriod ?? null),
        };
        this.cache.fillSubject(identity.subject, subject, generation);
      } catch (err) {
        subject = isConnectivityError(err) ? this.cache.staleSubject(identity.subject) : undefined;
        if (!subject) throw err;
        this.servedStale('jwt', err === UNREACHABLE_RECENTLY ? null : err);
      }
    }
    if (subject.disabled) throw disabledUser();
    this.usage.touch(subject.userId, null);
    const principal: Principal = {
      userId: subject.userId,
      email: subject.email,
      role: subject.role,
      method: 'jwt',
      apiKeyId: null,
      apiKey: null,
      team: subject.team,
      userBudget: subject.userBudget ?? null,
    };
    return principal;
  }

  /** A JWT user's team: its id, the user's role in it, its limits (null when it just went away). */
  private async teamOf(teamId: string, role: TeamRole): Promise<PrincipalTeam | null> {
    const rows = (await this.dataSource.query(TEAM_LIMITS_SQL, [teamId])) as {
      id: string;
      rpm: number | null;
      tpm: number | null;
      weight: number;
      budget_limit_micros: string | null;
      budget_period: BudgetPeriod | null;
    }[];
    const row = rows[0];
    return row
      ? {
          id: row.id,
          role,
          rpm: row.rpm,
          tpm: row.tpm,
          weight: row.weight,
          budget: budgetOf(row.budget_limit_micros, row.budget_period),
        }
      : null;
  }
}

/** An API key's team: the key's team_id (kept equal to its owner's), the owner's role in it. */
function keyTeam(row: KeyRow): PrincipalTeam | null {
  if (row.team_id === null) return null;
  return {
    id: row.team_id,
    role: row.owner_team_id === row.team_id && row.team_role === 'team_admin' ? 'team_admin' : 'member',
    rpm: row.team_rpm,
    tpm: row.team_tpm,
    weight: row.team_weight ?? 1,
    budget: budgetOf(row.team_budget_limit_micros, row.team_budget_period),
  };
}

/**
 * With a recent answer at hand (a stale cache entry), a lookup gets this long: a Postgres that
 * accepts bytes but never answers (frozen, partitioned) then falls back on that answer instead of
 * holding the request until TCP gives up. Without one, the lookup waits as long as the pool allows.
 */
export const STALE_FALLBACK_DEADLINE_MS = 1000;

/** Thrown (and caught) inside verifyJwt when Postgres failed moments ago: use the stale subject. */
const UNREACHABLE_RECENTLY = Object.assign(new Error('Postgres was unreachable moments ago'), {
  code: 'ECONNREFUSED',
});

function withinDeadline<T>(work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          Object.assign(new Error(`Postgres did not answer within ${STALE_FALLBACK_DEADLINE_MS} ms`), {
            code: 'ETIMEDOUT',
          }),
        ),
      STALE_FALLBACK_DEADLINE_MS,
    );
  });
  work.catch(() => undefined); // a late failure after the deadline is not an unhandled rejection
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
