import { describe, expect, it } from 'vitest';
import {
  decodeCursor,
  encodeCursor,
  microsToUsd,
  outcomeOfStatus,
  parseRequestQuery,
  parseStatus,
} from './request-query.js';

const ID = '0b6f9a52-3c1e-4d7a-9e2b-5f8c1a2d3e4f';

describe('requests query', () => {
  it('defaults: no filters, limit 50, no cursor', () => {
    expect(parseRequestQuery({})).toEqual({
      ok: true,
      query: {
        keyId: null,
        userId: null,
        teamId: null,
        providerId: null,
        model: null,
        endpoint: null,
        status: null,
        from: null,
        to: null,
        cursor: null,
        limit: 50,
      },
    });
  });

  it('parses every filter (ids lower-cased, times as dates, a status class as a range)', () => {
    const r = parseRequestQuery({
      key_id: ID.toUpperCase(),
      user_id: ID,
      team_id: ID,
      provider_id: ID,
      model: 'gpt-4o-mini',
      status: '4xx',
      from: '2026-12-01',
      to: '2026-12-01T10:00:00+02:00',
      limit: '500',
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.query.keyId).toBe(ID);
    expect(r.query.status).toEqual({ min: 400, max: 499 });
    expect(r.query.from?.toISOString()).toBe('2026-12-01T00:00:00.000Z');
    expect(r.query.to?.toISOString()).toBe('2026-12-01T08:00:00.000Z');
    expect(r.query.limit).toBe(500);
    expect(r.query.model).toBe('gpt-4o-mini');
  });

  it('status: an exact code 100-599 or a class', () => {
    expect(parseStatus('429')).toEqual({ min: 429, max: 429 });
    expect(parseStatus('2xx')).toEqual({ min: 200, max: 299 });
    expect(parseStatus('5XX')).toEqual({ min: 500, max: 599 });
    for (const bad of ['6xx', '99', '600', '20', 'abc', '2x', '200.0', ' 200'])
      expect(parseStatus(bad)).toBeNull();
  });

  it.each([
    ['key_id', 'nope'],
    ['user_id', '123'],
    ['team_id', `${ID}x`],
    ['provider_id', 'x'],
    ['status', '6xx'],
    ['from', '2026-12-01T10:00:00'],
    ['to', 'yesterday'],
    ['cursor', 'not-a-cursor'],
    ['limit', '0'],
    ['limit', '501'],
    ['limit', '1.5'],
    ['model', 'm'.repeat(256)],
  ])('a bad %s (%s) names the field', (param, value) => {
    const r = parseRequestQuery({ [param]: value });
    expect(r).toMatchObject({ ok: false, param });
  });

  it('endpoint: one of the relay endpoints, exact; anything else names endpoint', () => {
    for (const endpoint of ['chat', 'completions', 'embeddings', 'responses', 'messages']) {
      const r = parseRequestQuery({ endpoint });
      expect(r.ok && r.query.endpoint).toBe(endpoint);
    }
    for (const bad of ['chat.completions', 'Chat', 'images', ['chat', 'messages']]) {
      const r = parseRequestQuery({ endpoint: bad });
      expect(r.ok ? null : r.param, String(bad)).toBe('endpoint');
    }
  });

  it('a repeated parameter is refused; every problem is listed, the first named', () => {
    expect(parseRequestQuery({ model: ['a', 'b'] })).toMatchObject({ ok: false, param: 'model' });
    const r = parseRequestQuery({ key_id: 'x', limit: '0' });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.param).toBe('key_id');
    expect(r.message).toContain('key_id must be a UUID');
    expect(r.message).toContain('limit must be an integer 1-500');
  });

  it('from must be before to', () => {
    expect(parseRequestQuery({ from: '2026-12-02', to: '2026-12-01' })).toMatchObject({
      ok: false,
      param: 'from',
    });
    expect(parseRequestQuery({ from: '2026-12-01', to: '2026-12-01' })).toMatchObject({ ok: false });
  });

  it('the cursor round-trips (microseconds kept) and is base64url', () => {
    const cursor = { createdAt: '2026-12-01T10:00:00.123456Z', id: ID };
    const text = encodeCursor(cursor);
    expect(text).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(text)).toEqual(cursor);
    const r = parseRequestQuery({ cursor: text });
    expect(r.ok && r.query.cursor).toEqual(cursor);
  });

  it('a cursor it did not write is refused', () => {
    const enc = (s: string) => Buffer.from(s).toString('base64url');
    for (const bad of [
      enc(`2026-12-01T10:00:00.123Z|${ID}`), // not microseconds
      enc(`2026-12-01T10:00:00.123456Z|nope`),
      enc(`2026-13-45T10:00:00.123456Z|${ID}`),
      enc('garbage'),
      '',
      '!!!',
      'a'.repeat(300),
    ])
      expect(decodeCursor(bad)).toBeNull();
  });

  it('cost: micro-dollars as exact USD; outcome from the status', () => {
    expect(microsToUsd(null)).toBeNull();
    expect(microsToUsd('0')).toBe(0);
    expect(microsToUsd('142')).toBe(0.000142);
    expect(microsToUsd('12345678901')).toBe(12345.678901);
    expect(outcomeOfStatus(200)).toBe('ok');
    expect(outcomeOfStatus(499)).toBe('canceled');
    expect(outcomeOfStatus(429)).toBe('client_error');
    expect(outcomeOfStatus(502)).toBe('error');
  });
});
