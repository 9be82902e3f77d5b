/**
 * The spend API's query (`group_by`, `from`, `to`, `interval`), checked: a clear 400 naming the
 * parameter, never a 500. Pure: the controller hands in the raw strings and the clock.
 */
export const SPEND_GROUPS = ['key', 'user', 'team', 'model', 'provider'] as const;
export type SpendGroup = (typeof SPEND_GROUPS)[number];
/** What GET /api/me/spend may group by (the caller's own keys: no user or team split). */
export const OWN_SPEND_GROUPS = ['key', 'model', 'provider'] as const satisfies readonly SpendGroup[];

export const SPEND_INTERVALS = ['hour', 'day'] as const;
export type SpendInterval = (typeof SPEND_INTERVALS)[number];

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
export const DEFAULT_SPAN_MS = DAY_MS;
/** The longest span a query may cover, per interval (bounds the answer's size). */
export const MAX_SPAN_MS: Record<SpendInterval, number> = { hour: 31 * DAY_MS, day: 366 * DAY_MS };

export interface SpendQuery {
  groupBy: SpendGroup;
  interval: SpendInterval;
  /** Inclusive, at the start of its interval (UTC). */
  from: Date;
  /** Exclusive: an hour bucket counts when it starts before `to`. */
  to: Date;
}

export interface RawSpendQuery {
  group_by?: string;
  from?: string;
  to?: string;
  interval?: string;
}

export type SpendQueryCheck = { ok: true; query: SpendQuery } | { ok: false; message: string; param: string };

/** A date (`2026-12-01`, UTC midnight) or a date-time with `Z` or an offset. */
const ISO = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2}))?$/;

function parseTime(raw: string | undefined, param: string): Date | { message: string; param: string } | null {
  if (raw === undefined || raw === '') return null;
  const t = ISO.test(raw) ? Date.parse(raw) : Number.NaN;
  if (Number.isNaN(t))
    return {
      message: `${param} must be an ISO 8601 date (2026-12-01) or date-time with a zone (2026-12-01T10:00:00Z), got ${JSON.stringify(raw.slice(0, 64))}`,
      param,
    };
  return new Date(t);
}

function floorTo(ms: number, interval: SpendInterval): number {
  const unit = interval === 'hour' ? HOUR_MS : DAY_MS;
  return Math.floor(ms / unit) * unit;
}

export function parseSpendQuery(
  raw: RawSpendQuery,
  groups: readonly SpendGroup[],
  nowMs: number,
): SpendQueryCheck {
  const groupBy = (raw.group_by ?? 'key') as SpendGroup;
  if (!groups.includes(groupBy))
    return { ok: false, message: `group_by must be one of ${groups.join(', ')}`, param: 'group_by' };
  const interval = (raw.interval ?? 'hour') as SpendInterval;
  if (!SPEND_INTERVALS.includes(interval))
    return { ok: false, message: `interval must be one of ${SPEND_INTERVALS.join(', ')}`, param: 'interval' };
  const to = parseTime(raw.to, 'to');
  if (to && !(to instanceof Date)) return { ok: false, ...to };
  const from = parseTime(raw.from, 'from');
  if (from && !(from instanceof Date)) return { ok: false, ...from };
  const toMs = to ? to.getTime() : nowMs;
  const fromMs = floorTo(from ? from.getTime() : toMs - DEFAULT_SPAN_MS, interval);
  if (fromMs >= toMs) return { ok: false, message: 'from must be before to', param: 'from' };
  if (toMs - fromMs > MAX_SPAN_MS[interval])
    return {
      ok: false,
      message: `from and to may be at most ${MAX_SPAN_MS[interval] / DAY_MS} days apart with interval=${interval}`,
      param: 'from',
    };
  return { ok: true, query: { groupBy, interval, from: new Date(fromMs), to: new Date(toMs) } };
}
