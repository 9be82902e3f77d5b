import { describe, expect, it } from 'vitest';
import { storableText } from './storable-text.js';

describe('storableText', () => {
  it('replaces NUL and lone surrogates, keeps valid pairs', () => {
    expect(storableText('a\u0000b\u0000')).toBe('a\ufffdb\ufffd');
    expect(storableText('x\ud800y')).toBe('x\ufffdy');
    expect(storableText('x\udc00')).toBe('x\ufffd');
    expect(storableText('\udc00\ud800')).toBe('\ufffd\ufffd');
    expect(storableText('ok 😀')).toBe('ok 😀');
    expect(storableText(null)).toBeNull();
  });

  it('cuts to a number of characters (code points), never inside a surrogate pair', () => {
    expect(storableText('abcdef', 3)).toBe('abc');
    const s = `${'m'.repeat(254)}😀xyz`;
    expect(Array.from(storableText(s, 255))).toHaveLength(255);
    expect(storableText(s, 255).endsWith('😀')).toBe(true);
    expect(storableText('😀😀😀', 2)).toBe('😀😀');
  });
});
