/**
 * The authenticated caller, set on the request by the auth guard and read by later guards and
 * handlers. It lives here (not in the auth module) so RateLimit, Relay and others depend on this
 * small type instead of the auth module's internals.
 */
export type Role = 'admin' | 'developer' | 'user' | 'viewer';
export const ROLES: readonly Role[] = ['admin', 'developer', 'user', 'viewer'];
export type Priority = 'urgent' | 'high' | 'normal' | 'low';
export const PRIORITIES: readonly Priority[] = ['urgent', 'high', 'normal', 'low'];
/**
 * The one definition of priority order: 1 = urgent (served first) … 4 = low. The queue's score, the
 * dispatcher's levels, the status page's counts and the credential ceiling all read it.
 */
export const PRIORITY_RANK: Readonly<Record<Priority, number>> = { urgent: 1, high: 2, normal: 3, low: 4 };
/** Every rank, most urgent first. */
export const PRIORITY_RANKS: readonly number[] = PRIORITIES.map((p) => PRIORITY_RANK[p]);

/** A spend budget (docs/spend.md "Budgets"): integer micro-dollars per UTC calendar period. */
export interface PrincipalBudget {
  limitMicros: number;
  period: 'day' | 'week' | 'month' | 'total';
}

export interface ApiKeySettings {
  /** Requests per minute for this key; null = the gateway default. */
  rpm: number | null;
  /** Tokens per minute for this key; null = unlimited. */
  tpm: number | null;
  /** Model ids or `*` patterns this key may call; null = all. */
  allowedModels: string[] | null;
  maxPriority: Priority;
  /** The key's own spend budget (absent or null: none). */
  budget?: PrincipalBudget | null;
  /** Store this key's request and response bodies (docs/requests.md "Body capture"); absent: off. */
  captureBodies?: boolean;
}

/** The caller's team (docs/auth.md "Teams"): its membership role and its limits. */
export interface PrincipalTeam {
  id: string;
  /** `team_admin` holds the team scope of TEAM_ADMIN_GRANTS (src/common/permissions.ts) on this team. */
  role: 'member' | 'team_admin';
  /** The team's requests per minute (policy `team`, subject `team:<id>`); null = none. */
  rpm: number | null;
  /** The team's tokens per minute (policy `team_tpm`); null = none. */
  tpm: number | null;
  /** Fair-share weight 1..1000 (docs/relay.md "Fair share across teams"); absent = 1. */
  weight?: number;
  /** The team's spend budget (absent or null: none). */
  budget?: PrincipalBudget | null;
}

export interface Principal {
  userId: string;
  email: string | null;
  role: Role;
  method: 'jwt' | 'api_key';
  /** Set when method is api_key. */
  apiKeyId: string | null;
  /**
   * For an API key, allowedModels and maxPriority are already folded with its team's (the tighter
   * applies: src/auth/domain/team-rules.ts), so the relay's one check covers both.
   */
  apiKey: ApiKeySettings | null;
  /** The user's team, when they are in one (absent or null: none). */
  team?: PrincipalTeam | null;
  /** The user's own spend budget, shared by all their keys and sessions (absent or null: none). */
  userBudget?: PrincipalBudget | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}
