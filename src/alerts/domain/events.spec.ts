import { describe, expect, it } from 'vitest';
import {
  checkEvents,
  checkWebhookUrlShape,
  eventBody,
  generateSecret,
  secretHint,
  subscribes,
  TransitionMemory,
} from './events.js';

describe('checkEvents', () => {
  it('accepts known events and *, dropping duplicates (* alone stands for all)', () => {
    expect(checkEvents(['key.cooling', 'key.cooling', 'breaker.opened'])).toEqual({
      ok: true,
      value: ['key.cooling', 'breaker.opened'],
    });
    expect(checkEvents(['key.broken', '*'])).toEqual({ ok: true, value: ['*'] });
  });
  it('refuses an empty list and names unknown events', () => {
    expect(checkEvents([]).ok).toBe(false);
    const r = checkEvents(['key.cooling', 'key.melted']);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.message).toContain('"key.melted"');
  });
  it('subscribes: exact names or *', () => {
    expect(subscribes(['key.cooling'], 'key.cooling')).toBe(true);
    expect(subscribes(['key.cooling'], 'key.broken')).toBe(false);
    expect(subscribes(['*'], 'budget.threshold')).toBe(true);
  });
});

describe('checkWebhookUrlShape', () => {
  it('keeps http(s) URLs with a path and query', () => {
    expect(checkWebhookUrlShape('https://hooks.example.com/in?token=1')).toEqual({
      ok: true,
      value: { url: 'https://hooks.example.com/in?token=1', host: 'hooks.example.com' },
    });
    expect(checkWebhookUrlShape('http://[::1]:8080/x')).toMatchObject({ ok: true, value: { host: '::1' } });
  });
  it('refuses other schemes, credentials, fragments and non-URLs', () => {
    for (const raw of ['ftp://x.example/', 'file:///etc/passwd', 'gopher://x/', 'not a url', '/relative'])
      expect(checkWebhookUrlShape(raw).ok).toBe(false);
    expect(checkWebhookUrlShape('https://u:p@x.example/').ok).toBe(false);
    expect(checkWebhookUrlShape('https://x.example/#frag').ok).toBe(false);
  });
});

describe('secrets and bodies', () => {
  it('generates distinct whsec_ secrets of 32 random bytes and hints only their end', () => {
    const a = generateSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(generateSecret()).not.toBe(a);
    expect(secretHint(a)).toBe(`whsec_…${a.slice(-4)}`);
    expect(secretHint('my-own-secret-value-1234')).toBe('…1234');
  });
  it('serialises {id, type, created_at, data} in that order', () => {
    const body = eventBody({ id: 'e', type: 'key.cooling', created_at: 't', data: { key_id: 'k' } });
    expect(body).toBe('{"id":"e","type":"key.cooling","created_at":"t","data":{"key_id":"k"}}');
  });
});

describe('TransitionMemory', () => {
  it('announces a key once while its cooldown lasts, extensions included, and again after', () => {
    const m = new TransitionMemory();
    expect(m.first('k1', 1000, 0)).toBe(true);
    expect(m.first('k1', 1000, 10)).toBe(false);
    expect(m.first('k1', 5000, 500)).toBe(false); // extended while cooling
    expect(m.first('k1', 6000, 2000)).toBe(false); // still inside the extension
    expect(m.first('k2', 1000, 10)).toBe(true);
    expect(m.first('k1', 9000, 7000)).toBe(true); // a new cooldown after the last one ended
  });
  it('forgets the oldest entries past its bound', () => {
    const m = new TransitionMemory(2);
    m.first('a', 100, 0);
    m.first('b', 100, 0);
    m.first('c', 100, 0);
    expect(m.first('a', 100, 1)).toBe(true);
    expect(m.first('c', 100, 1)).toBe(false);
  });
});
