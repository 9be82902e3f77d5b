import { describe, expect, it } from 'vitest';
import { parsePriority, priorityCeiling } from './priority.js';

describe('X-Priority', () => {
  it('urgent | high | normal | low, case-insensitive, trimmed, default normal', () => {
    expect(parsePriority(undefined, 'urgent')).toEqual({ ok: true, value: 'normal' });
    expect(parsePriority('', 'urgent')).toEqual({ ok: true, value: 'normal' });
    expect(parsePriority(' HIGH ', 'urgent')).toEqual({ ok: true, value: 'high' });
    expect(parsePriority(['low', 'urgent'], 'urgent')).toEqual({ ok: true, value: 'low' });
  });

  it('anything else → 400 invalid_priority naming the header', () => {
    const v = parsePriority('critical', 'urgent');
    expect(v).toMatchObject({
      ok: false,
      rejection: { status: 400, code: 'invalid_priority', param: 'X-Priority' },
    });
  });

  it('above the credential’s maximum → 403 priority_not_allowed naming the maximum', () => {
    const v = parsePriority('urgent', 'high');
    expect(v).toMatchObject({ ok: false, rejection: { status: 403, code: 'priority_not_allowed' } });
    if (!v.ok) expect(v.rejection.message).toContain('(high)');
    expect(parsePriority('high', 'high')).toEqual({ ok: true, value: 'high' });
  });

  it('the ceiling: the key’s max_priority; JWT callers urgent for admins, high otherwise', () => {
    expect(priorityCeiling({ role: 'user', apiKey: { maxPriority: 'low' } })).toBe('low');
    expect(priorityCeiling({ role: 'admin', apiKey: null })).toBe('urgent');
    expect(priorityCeiling({ role: 'developer', apiKey: null })).toBe('high');
  });
});
