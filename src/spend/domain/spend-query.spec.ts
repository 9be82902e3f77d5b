import { describe, expect, it } from 'vitest';
import { OWN_SPEND_GROUPS, parseSpendQuery, SPEND_GROUPS } from './spend-query.js';

const NOW = Date.parse('2026-12-06T10:30:00Z');
const parse = (raw: Record<string, string>, groups = SPEND_GROUPS) => parseSpendQuery(raw, groups, NOW);
const param = (
  raw: Record<string, string>,
  groups: readonly (typeof SPEND_GROUPS)[number][] = SPEND_GROUPS,
) => {
  const r = parseSpendQuery(raw, groups, NOW);
  return r.ok ? null : r.param;
};

describe('parseSpendQuery', () => {
  it('defaults: group by key, hourly, the last 24 hours (from at its hour)', () => {
    expect(parse({})).toEqual({
      ok: true,
      query: {
        groupBy: 'key',
        interval: 'hour',
        from: new Date('2026-12-05T10:00:00Z'),
        to: new Date(NOW),
      },
    });
  });

  it('from is floored to its interval; dates and offsets are accepted', () => {
    const r = parse({
      from: '2026-12-01',
      to: '2026-12-06T12:00:00+02:00',
      interval: 'day',
      group_by: 'model',
    });
    expect(r).toEqual({
      ok: true,
      query: {
        groupBy: 'model',
        interval: 'day',
        from: new Date('2026-12-01T00:00:00Z'),
        to: new Date('2026-12-06T10:00:00Z'),
      },
    });
    const h = parse({ from: '2026-12-06T08:59:59.999Z' });
    expect(h.ok && h.query.from.toISOString()).toBe('2026-12-06T08:00:00.000Z');
  });

  it('names the bad parameter', () => {
    expect(param({ group_by: 'week' })).toBe('group_by');
    expect(param({ group_by: 'user' }, [...OWN_SPEND_GROUPS])).toBe('group_by');
    expect(param({ group_by: 'team' }, [...OWN_SPEND_GROUPS])).toBe('group_by');
    expect(param({ interval: 'minute' })).toBe('interval');
    expect(param({ from: 'yesterday' })).toBe('from');
    expect(param({ from: '2026-12-06T08:00:00' })).toBe('from'); // no zone: ambiguous
    expect(param({ to: '2026-13-40' })).toBe('to');
    expect(param({ from: '2026-12-06T11:00:00Z' })).toBe('from'); // after to (now)
    expect(param({ from: '2026-10-01', interval: 'hour' })).toBe('from'); // > 31 days hourly
    expect(param({ from: '2026-10-01', interval: 'day' })).toBeNull();
  });
});
