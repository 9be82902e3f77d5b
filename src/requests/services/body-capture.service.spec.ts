import { describe, expect, it } from 'vitest';
import { CapturedBodies } from './body-capture.service.js';

describe('CapturedBodies', () => {
  it('redacts and caps both bodies, once', () => {
    const c = new CapturedBodies(`{"content":"sk-${'a'.repeat(30)}"}`, 64);
    c.add('{"choices":');
    c.add('[]}');
    const done = c.finish();
    expect(done).toEqual({
      requestBody: '{"content":"[REDACTED]"}',
      responseBody: '{"choices":[]}',
      truncated: false,
    });
    expect(c.finish()).toBe(done);
  });

  it('keeps bounded memory on a long stream and says it was cut', () => {
    const c = new CapturedBodies(null, 100);
    for (let i = 0; i < 10_000; i++) c.add('data: {"x":1}\n\n');
    expect((c as unknown as { response: string }).response.length).toBeLessThanOrEqual(100 + 1024);
    const done = c.finish();
    expect(done.requestBody).toBeNull();
    expect(Buffer.byteLength(done.responseBody!)).toBeLessThanOrEqual(100);
    expect(done.truncated).toBe(true);
  });

  it('a secret straddling the cap is never stored as a readable prefix', () => {
    const secret = `sk-${'z'.repeat(60)}`;
    const c = new CapturedBodies(`${'x'.repeat(90)}${secret}`, 100);
    const done = c.finish();
    expect(done.requestBody).not.toContain('sk-z');
    expect(done.truncated).toBe(false);
  });
});
