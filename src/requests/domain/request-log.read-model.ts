/**
 * The requests module's read model of `request_log` and `request_bodies`: the table is the shared
 * contract with the relay, which writes it (this module never imports the relay). Columns as the
 * migrations define them; bigint and timestamps as Postgres text.
 */
export interface RequestLogRecord {
  id: string;
  /** created_at in microseconds, ISO 8601 UTC (`…T10:00:00.123456Z`): the cursor's key. */
  created_at_us: string;
  request_id: string;
  endpoint: string;
  model: string | null;
  served_model: string | null;
  status: number;
  error_code: string | null;
  priority: string;
  stream: boolean;
  prompt_tokens: number;
  completion_tokens: number;
  cost_micro_usd: string | null;
  queue_ms: number;
  upstream_ms: number;
  overhead_ms: number;
  attempts: number;
  provider_id: string | null;
  provider_name: string | null;
  provider_key_id: string | null;
  api_key_id: string | null;
  user_id: string | null;
  team_id: string | null;
  route_id: string | null;
  attempt_log: StoredAttemptRecord[] | null;
}

/** One element of request_log.attempt_log (snake_case, as the relay writes it). */
export interface StoredAttemptRecord {
  attempt: number;
  provider_id: string;
  model: string;
  key_id: string | null;
  status: number | null;
  outcome: string;
  ms: number;
}

export interface RequestBodiesRecord {
  request_body: string | null;
  response_body: string | null;
  truncated: boolean;
}
