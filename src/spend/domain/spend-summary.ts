/**
 * The dashboard's spend summary (pure): today's (UTC day) and this month's (UTC month) requests and
 * cost per team and per model, summed from rollup rows grouped by team × model. Amounts stay
 * integer micro-dollars (bigint) until the view.
 */

/** One team × model of the current UTC month, as the repository reads it (sums as text). */
export interface SummaryRow {
  team_id: string | null;
  team_name: string | null;
  model: string;
  today_requests: string;
  today_micros: string;
  month_requests: string;
  month_micros: string;
}

export interface PeriodTotals {
  requests: number;
  micros: bigint;
}

export interface SummaryLine {
  today: PeriodTotals;
  month: PeriodTotals;
}

export interface TeamLine extends SummaryLine {
  teamId: string | null;
  /** null: no team (team_id NULL) or a team deleted since (teamId set). */
  teamName: string | null;
}

export interface ModelLine extends SummaryLine {
  model: string;
}

export interface SpendSummary {
  dayStart: Date;
  monthStart: Date;
  total: SummaryLine;
  byTeam: TeamLine[];
  byModel: ModelLine[];
}

/** Start of the UTC day of `now`. */
export function utcDayStart(now: number): Date {
  const d = new Date(now);
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
}

/** Start of the UTC month of `now`. */
export function utcMonthStart(now: number): Date {
  const d = new Date(now);
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
}

const zero = (): SummaryLine => ({
  today: { requests: 0, micros: 0n },
  month: { requests: 0, micros: 0n },
});

function add(line: SummaryLine, row: SummaryRow): void {
  line.today.requests += Number(row.today_requests);
  line.today.micros += BigInt(row.today_micros);
  line.month.requests += Number(row.month_requests);
  line.month.micros += BigInt(row.month_micros);
}

/** Month cost, then month requests, descending; then the label. */
function order<T extends SummaryLine>(label: (l: T) => string): (a: T, b: T) => number {
  return (a, b) =>
    a.month.micros !== b.month.micros
      ? a.month.micros > b.month.micros
        ? -1
        : 1
      : b.month.requests - a.month.requests || label(a).localeCompare(label(b));
}

/** Totals per team (the "no team" line included when it has requests) and per model. */
export function summarize(rows: SummaryRow[], dayStart: Date, monthStart: Date): SpendSummary {
  const total = zero();
  const teams = new Map<string | null, TeamLine>();
  const models = new Map<string, ModelLine>();
  for (const row of rows) {
    add(total, row);
    let team = teams.get(row.team_id);
    if (!team) {
      team = { teamId: row.team_id, teamName: row.team_name, ...zero() };
      teams.set(row.team_id, team);
    }
    add(team, row);
    let model = models.get(row.model);
    if (!model) {
      model = { model: row.model, ...zero() };
      models.set(row.model, model);
    }
    add(model, row);
  }
  return {
    dayStart,
    monthStart,
    total,
    byTeam: [...teams.values()].sort(order((l) => l.teamName ?? l.teamId ?? '')),
    byModel: [...models.values()].sort(order((l) => l.model)),
  };
}
