import { describe, expect, it } from 'vitest';
import { summarize, utcDayStart, utcMonthStart, type SummaryRow } from './spend-summary.js';

const row = (
  team_id: string | null,
  team_name: string | null,
  model: string,
  today: [number, number],
  month: [number, number],
): SummaryRow => ({
  team_id,
  team_name,
  model,
  today_requests: String(today[0]),
  today_micros: String(today[1]),
  month_requests: String(month[0]),
  month_micros: String(month[1]),
});

describe('spend summary', () => {
  it('UTC day and month starts, whatever the local zone', () => {
    const now = Date.parse('2026-12-01T23:30:00-05:00'); // 2026-12-02T04:30Z
    expect(utcDayStart(now).toISOString()).toBe('2026-12-02T00:00:00.000Z');
    expect(utcMonthStart(now).toISOString()).toBe('2026-12-01T00:00:00.000Z');
    expect(utcMonthStart(Date.parse('2027-01-01T00:00:00Z')).toISOString()).toBe('2027-01-01T00:00:00.000Z');
  });

  it('sums per team (no team included) and per model, exact in micro-dollars, biggest month first', () => {
    const s = summarize(
      [
        row('t1', 'red', 'gpt-4o', [1, 10], [3, 30]),
        row('t1', 'red', 'gpt-4o-mini', [0, 0], [2, 4]),
        row(null, null, 'gpt-4o', [2, 1000], [2, 1000]),
        row('t2', 'blue', 'gpt-4o-mini', [0, 0], [5, 0]),
      ],
      new Date('2026-12-02T00:00:00Z'),
      new Date('2026-12-01T00:00:00Z'),
    );
    expect(s.byTeam.map((t) => [t.teamName, t.today.requests, t.month.requests, t.month.micros])).toEqual([
      [null, 2, 2, 1000n],
      ['red', 1, 5, 34n],
      ['blue', 0, 5, 0n],
    ]);
    expect(s.byModel.map((m) => [m.model, m.today.micros, m.month.requests])).toEqual([
      ['gpt-4o', 1010n, 5],
      ['gpt-4o-mini', 0n, 7],
    ]);
    expect(s.total.month.requests).toBe(12);
    expect(s.total.today.requests).toBe(3);
  });

  it('bigint sums do not lose micro-dollars beyond 2^53', () => {
    const big: SummaryRow = { ...row('t', 'x', 'm', [1, 0], [1, 0]), month_micros: '9007199254740993' };
    const s = summarize([big, big], new Date(0), new Date(0));
    expect(s.byTeam[0]!.month.micros).toBe(18_014_398_509_481_986n);
  });

  it('no rows: empty lists and zero totals', () => {
    const s = summarize([], new Date(0), new Date(0));
    expect(s.byTeam).toEqual([]);
    expect(s.byModel).toEqual([]);
    expect(s.total.month).toEqual({ requests: 0, micros: 0n });
  });
});
