import { encodeCursor, microsToUsd, outcomeOfStatus } from './request-query.js';
import type { RequestBodiesRecord, RequestLogRecord } from './request-log.read-model.js';

/** One request as the API shows it (snake_case; docs/requests.md). */
export interface RequestView {
  id: string;
  request_id: string;
  created_at: string;
  endpoint: string;
  model: string | null;
  served_model: string | null;
  status: number;
  outcome: string;
  error_code: string | null;
  priority: string;
  stream: boolean;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cost_usd: number | null;
  queue_ms: number;
  upstream_ms: number;
  overhead_ms: number;
  attempt_count: number;
  provider_id: string | null;
  provider_name: string | null;
  provider_key_id: string | null;
  api_key_id: string | null;
  user_id: string | null;
  team_id: string | null;
  route_id: string | null;
}

export interface AttemptView {
  attempt: number;
  provider_id: string;
  provider_name: string | null;
  model: string;
  provider_key_id: string | null;
  status: number | null;
  outcome: string;
  ms: number;
}

export interface RequestDetailView extends RequestView {
  attempts: AttemptView[];
  request_body: string | null;
  response_body: string | null;
  body_truncated: boolean;
}

export interface RequestPage {
  data: RequestView[];
  next_cursor: string | null;
}

/** created_at to the millisecond (the cursor keeps the microseconds). */
function isoMs(us: string): string {
  return new Date(Date.parse(us)).toISOString();
}

export function requestView(r: RequestLogRecord): RequestView {
  return {
    id: r.id,
    request_id: r.request_id,
    created_at: isoMs(r.created_at_us),
    endpoint: r.endpoint,
    model: r.model,
    served_model: r.served_model ?? r.model,
    status: r.status,
    outcome: outcomeOfStatus(r.status),
    error_code: r.error_code,
    priority: r.priority,
    stream: r.stream,
    prompt_tokens: r.prompt_tokens,
    completion_tokens: r.completion_tokens,
    total_tokens: r.prompt_tokens + r.completion_tokens,
    cost_usd: microsToUsd(r.cost_micro_usd),
    queue_ms: r.queue_ms,
    upstream_ms: r.upstream_ms,
    overhead_ms: r.overhead_ms,
    attempt_count: r.attempts,
    provider_id: r.provider_id,
    provider_name: r.provider_name,
    provider_key_id: r.provider_key_id,
    api_key_id: r.api_key_id,
    user_id: r.user_id,
    team_id: r.team_id,
    route_id: r.route_id,
  };
}

/** A page: the first `limit` rows, and a cursor after the last one when there were more. */
export function requestPage(rows: RequestLogRecord[], limit: number): RequestPage {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    data: page.map(requestView),
    next_cursor:
      rows.length > limit && last ? encodeCursor({ createdAt: last.created_at_us, id: last.id }) : null,
  };
}

/**
 * The attempts of a request: its attempt_log when one was stored (routes and retries), otherwise the
 * one attempt its own columns describe (none when it never reached a provider).
 */
export function attemptsOf(r: RequestLogRecord, providerNames: ReadonlyMap<string, string>): AttemptView[] {
  if (r.attempt_log && r.attempt_log.length > 0)
    return r.attempt_log.map((a) => ({
      attempt: a.attempt,
      provider_id: a.provider_id,
      provider_name: providerNames.get(a.provider_id) ?? null,
      model: a.model,
      provider_key_id: a.key_id,
      status: a.status,
      outcome: a.outcome,
      ms: a.ms,
    }));
  if (r.provider_id === null) return [];
  return [
    {
      attempt: 1,
      provider_id: r.provider_id,
      provider_name: r.provider_name,
      model: r.served_model ?? r.model ?? '',
      provider_key_id: r.provider_key_id,
      status: r.status,
      outcome: outcomeOfStatus(r.status),
      ms: r.upstream_ms,
    },
  ];
}

export function requestDetail(
  r: RequestLogRecord,
  bodies: RequestBodiesRecord | null,
  providerNames: ReadonlyMap<string, string>,
): RequestDetailView {
  return {
    ...requestView(r),
    attempts: attemptsOf(r, providerNames),
    request_body: bodies?.request_body ?? null,
    response_body: bodies?.response_body ?? null,
    body_truncated: bodies?.truncated ?? false,
  };
}
