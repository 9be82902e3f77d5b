/**
 * The authenticated caller, set on the request by the auth guard and read by later guards and
 * handlers. It lives here (not in the auth module) so RateLimit, Relay and others depend on this
 * small type instead of the auth module's internals.
 */
export type Role = 'admin' | 'developer' | 'user' | 'viewer';
export const ROLES: readonly Role[] = ['admin', 'developer', 'user', 'viewer'];
export type Priority = 'urgent' | 'high' | 'normal' | 'low';
export const PRIORITIES: readonly Priority[] = ['urgent', 'high', 'normal', 'low'];

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
