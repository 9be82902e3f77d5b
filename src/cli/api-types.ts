/**
 * The admin API's JSON shapes the CLI reads (see /docs-json). Only the fields it uses; the CLI
 * talks HTTP to a running gateway and imports nothing from the server.
 */
export const ROLES = ['admin', 'developer', 'user', 'viewer'] as const;
export const PRIORITIES = ['urgent', 'high', 'normal', 'low'] as const;
export const BUDGET_PERIODS = ['day', 'week', 'month', 'total'] as const;

export interface Page<T> {
  data: T[];
  has_more: boolean;
}

export interface ApiKey {
  id: string;
  name: string;
  masked: string;
  owner_id: string;
  role: string;
  limits: { rpm: number | null; tpm: number | null };
  allowed_models: string[] | null;
  max_priority: string;
  /** Absent on gateways older than key budgets. */
  budget?: { limit_usd: number; period: string } | null;
  expires_at: string | null;
  last_used_at: string | null;
  created_at: string;
  revoked_at: string | null;
}

export interface CreatedApiKey extends ApiKey {
  key: string;
}

export interface User {
  id: string;
  email: string | null;
  name: string | null;
  role: string;
  disabled: boolean;
  jwt_subject: string | null;
  created_at: string;
  last_seen_at: string | null;
}

export interface KeyCounts {
  total: number;
  active: number;
  cooling: number;
  disabled: number;
  broken: number;
  invalid: number;
}

export interface Provider {
  id: string;
  name: string;
  kind: 'openai' | 'anthropic';
  base_url: string;
  models: string[];
  rpm: number | null;
  burst: number | null;
  timeout_ms: number;
  enabled: boolean;
  source: string;
  keys: KeyCounts;
}

export interface ProviderKey {
  id: string;
  provider_id: string;
  label: string;
  masked: string;
  priority: number;
  max_rpm: number | null;
  max_tpm: number | null;
  max_concurrent: number | null;
  enabled: boolean;
  state: string;
  cooldown_until: string | null;
  total_requests: number;
  total_tokens: number;
  last_used_at: string | null;
  encryption_key_id: string;
  window: { requests: number; tokens: number; in_flight: number };
}

export interface HealReport {
  encryption_key_id: string;
  total: number;
  healed: number;
  recovered: number;
  broken: number;
}

type Depth = Record<(typeof PRIORITIES)[number], number> & { total: number };

export interface StatusKey {
  id: string;
  label: string;
  state: string;
  cooldown_remaining_seconds: number;
  concurrency_mode: string;
  concurrency_limit: number | null;
  in_flight: number | null;
  rpm_used: number | null;
  max_rpm: number | null;
}

export interface Status {
  mode: string;
  version: string;
  instance_id: string;
  uptime_seconds: number;
  instances: { id: string; hostname: string; self: boolean; last_seen_at: string }[];
  requests: {
    http_total: number;
    relayed_total: number;
    rate_limited_total: number;
    upstream_429_total: number;
    tokens: { prompt: number; completion: number };
    relayed_by_outcome: Record<string, number>;
  };
  errors: Record<string, number>;
  throughput: { window_seconds: number; http_per_second: number; relayed_per_second: number };
  queue: Depth;
  providers: {
    id: string;
    name: string;
    enabled: boolean;
    queue: Depth;
    retreat: { state: string; effective_rpm: number | null; base_rpm: number | null } | null;
    keys: StatusKey[];
    key_states: Record<string, number>;
  }[];
  problems: string[];
}

export interface RouteTarget {
  provider_id: string;
  /** The provider's name; null when the provider was deleted. */
  provider: string | null;
  model: string;
  weight: number;
  tier: number;
  timeouts: Record<string, number | null> | null;
  breaker: 'auto' | 'open' | 'closed';
}

export interface Route {
  id: string;
  model: string;
  targets: RouteTarget[];
  max_attempts: number;
  enabled: boolean;
  source: string;
  created_at: string;
  updated_at: string;
}
