/**
 * The requests API's query (docs/requests.md): filters, the page size and the opaque cursor, checked
 * into a clear 400 naming the parameter (every problem listed), never a 500. Pure: the controller
 * hands in the raw query strings.
 */

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 500;

/** Where a page ends: the last row's (created_at, id), newest-first order. */
export interface Cursor {
  /** created_at as Postgres holds it (microseconds), ISO 8601 UTC: `2026-12-01T10:00:00.123456Z`. */
  createdAt: string;
  id: string;
}

/** `status`: one code, or a class (`2xx` = 200..299). */
export type StatusFilter = { min: number; max: number };

/** The relay endpoints a row can come from (request_log.endpoint; docs/requests.md). */
export const REQUEST_ENDPOINTS = ['chat', 'completions', 'embeddings', 'responses', 'messages'] as const;
export type RequestEndpoint = (typeof REQUEST_ENDPOINTS)[number];

export interface RequestQuery {
  keyId: string | null;
  userId: string | null;
  teamId: string | null;
  providerId: string | null;
  model: string | null;
  endpoint: RequestEndpoint | null;
  status: StatusFilter | null;
  /** Inclusive. */
  from: Date | null;
  /** Exclusive. */
  to: Date | null;
  cursor: Cursor | null;
  limit: number;
}

export type RawRequestQuery = Partial<Record<string, unknown>>;

export type QueryCheck = { ok: true; query: RequestQuery } | { ok: false; param: string; message: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** A date (`2026-12-01`, UTC midnight) or a date-time with `Z` or an offset. */
const ISO = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2}))?$/;
/** The cursor's time: what the repository writes (microseconds, UTC). */
const CURSOR_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const STATUS_CLASS = /^([1-5])xx$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** The cursor clients pass back: base64url of `created_at|id` (opaque to them). */
export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(`${cursor.createdAt}|${cursor.id}`, 'utf8').toString('base64url');
}

/** The cursor, or null when it is not one this API wrote. */
export function decodeCursor(raw: string): Cursor | null {
  if (raw.length === 0 || raw.length > 200 || !/^[A-Za-z0-9_-]+$/.test(raw)) return null;
  const text = Buffer.from(raw, 'base64url').toString('utf8');
  const bar = text.indexOf('|');
  if (bar < 0) return null;
  const createdAt = text.slice(0, bar);
  const id = text.slice(bar + 1);
  if (!CURSOR_TIME.test(createdAt) || Number.isNaN(Date.parse(createdAt)) || !isUuid(id)) return null;
  return { createdAt, id: id.toLowerCase() };
}

export function parseStatus(raw: string): StatusFilter | null {
  const cls = STATUS_CLASS.exec(raw);
  if (cls) {
    const base = Number(cls[1]) * 100;
    return { min: base, max: base + 99 };
  }
  if (!/^\d{3}$/.test(raw)) return null;
  const code = Number(raw);
  return code >= 100 && code <= 599 ? { min: code, max: code } : null;
}

function parseTime(raw: string): Date | null {
  const t = ISO.test(raw) ? Date.parse(raw) : Number.NaN;
  return Number.isNaN(t) ? null : new Date(t);
}

const quoted = (raw: string) => JSON.stringify(raw.slice(0, 64));

export function parseRequestQuery(raw: RawRequestQuery): QueryCheck {
  const problems: { param: string; message: string }[] = [];
  const fail = (param: string, message: string) => problems.push({ param, message });
  /** One string value, or undefined when absent (a repeated parameter is a problem). */
  const one = (param: string): string | undefined => {
    const v = raw[param];
    if (v === undefined || v === '') return undefined;
    if (typeof v !== 'string') {
      fail(param, `${param} must be given once, as a string`);
      return undefined;
    }
    return v;
  };
  const uuid = (param: string): string | null => {
    const v = one(param);
    if (v === undefined) return null;
    if (!isUuid(v)) {
      fail(param, `${param} must be a UUID, got ${quoted(v)}`);
      return null;
    }
    return v.toLowerCase();
  };

  const keyId = uuid('key_id');
  const userId = uuid('user_id');
  const teamId = uuid('team_id');
  const providerId = uuid('provider_id');

  let model: string | null = null;
  const m = one('model');
  if (m !== undefined) {
    if (m.length > 255) fail('model', 'model must be at most 255 characters');
    else model = m;
  }

  let endpoint: RequestEndpoint | null = null;
  const e = one('endpoint');
  if (e !== undefined) {
    if ((REQUEST_ENDPOINTS as readonly string[]).includes(e)) endpoint = e as RequestEndpoint;
    else fail('endpoint', `endpoint must be one of ${REQUEST_ENDPOINTS.join(', ')}, got ${quoted(e)}`);
  }

  let status: StatusFilter | null = null;
  const s = one('status');
  if (s !== undefined) {
    status = parseStatus(s);
    if (!status) fail('status', `status must be a code 100-599 or a class 1xx-5xx, got ${quoted(s)}`);
  }

  const time = (param: string): Date | null => {
    const v = one(param);
    if (v === undefined) return null;
    const t = parseTime(v);
    if (!t)
      fail(
        param,
        `${param} must be an ISO 8601 date (2026-12-01) or date-time with a zone (2026-12-01T10:00:00Z), got ${quoted(v)}`,
      );
    return t;
  };
  const from = time('from');
  const to = time('to');
  if (from && to && from.getTime() >= to.getTime()) fail('from', 'from must be before to');

  let cursor: Cursor | null = null;
  const c = one('cursor');
  if (c !== undefined) {
    cursor = decodeCursor(c);
    if (!cursor) fail('cursor', 'cursor must be a next_cursor this API returned');
  }

  let limit = DEFAULT_LIMIT;
  const l = one('limit');
  if (l !== undefined) {
    const n = /^\d{1,6}$/.test(l) ? Number(l) : Number.NaN;
    if (!(n >= 1 && n <= MAX_LIMIT))
      fail('limit', `limit must be an integer 1-${MAX_LIMIT}, got ${quoted(l)}`);
    else limit = n;
  }

  if (problems.length > 0)
    return { ok: false, param: problems[0]!.param, message: problems.map((p) => p.message).join('; ') };
  return {
    ok: true,
    query: { keyId, userId, teamId, providerId, model, endpoint, status, from, to, cursor, limit },
  };
}

/** What a row's status says about how it ended (request_log keeps the status and error code, not the outcome). */
export function outcomeOfStatus(status: number): 'ok' | 'canceled' | 'client_error' | 'error' {
  if (status < 400) return 'ok';
  if (status === 499) return 'canceled';
  return status < 500 ? 'client_error' : 'error';
}

/** Integer micro-dollars (bigint text) as USD, exact to 6 decimals; null stays null. */
export function microsToUsd(micros: string | null): number | null {
  if (micros === null) return null;
  const n = BigInt(micros);
  const neg = n < 0n;
  const abs = neg ? -n : n;
  const usd = Number(`${abs / 1_000_000n}.${String(abs % 1_000_000n).padStart(6, '0')}`);
  return neg ? -usd : usd;
}
