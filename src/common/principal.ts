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

export interface ApiKeySettings {
  /** Requests per minute for this key; null = the gateway default. */
  rpm: number | null;
  /** Tokens per minute for this key; null = unlimited. */
  tpm: number | null;
  /** Model ids or `*` patterns this key may call; null = all. */
  allowedModels: string[] | null;
  maxPriority: Priority;
}

export interface Principal {
  userId: string;
  email: string | null;
  role: Role;
  method: 'jwt' | 'api_key';
  /** Set when method is api_key. */
  apiKeyId: string | null;
  apiKey: ApiKeySettings | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}
