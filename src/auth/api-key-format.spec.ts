import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { API_KEY_PATTERN } from '../config/app-config.js';
import { describeApiKey, generateApiKey, hashApiKey, isApiKeyFormat, maskApiKey } from './api-key-format.js';

describe('API key format', () => {
  it('generates fg_ + 43 base64url characters (32 random bytes)', () => {
    const { raw } = generateApiKey();
    expect(raw).toMatch(/^fg_[A-Za-z0-9_-]{43}$/);
    expect(raw).toHaveLength(46);
    expect(API_KEY_PATTERN.test(raw)).toBe(true);
    expect(Buffer.from(raw.slice(3), 'base64url')).toHaveLength(32);
  });

  it('never repeats itself', () => {
    const keys = new Set(Array.from({ length: 2000 }, () => generateApiKey().raw));
    expect(keys.size).toBe(2000);
  });

  it('stores a SHA-256 hex hash, the first 8 characters and the last 4 — never the key', () => {
    const m = generateApiKey();
    expect(m.hash).toBe(createHash('sha256').update(m.raw).digest('hex'));
    expect(m.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(m.prefix).toBe(m.raw.slice(0, 8));
    expect(m.prefix.startsWith('fg_')).toBe(true);
    expect(m.last4).toBe(m.raw.slice(-4));
    expect(m.hash).not.toContain(m.raw.slice(3));
  });

  it('hashes deterministically and distinguishes keys differing in one character', () => {
    const raw = `fg_${'a'.repeat(43)}`;
    expect(hashApiKey(raw)).toBe(hashApiKey(raw));
    expect(hashApiKey(raw)).not.toBe(hashApiKey(`fg_${'a'.repeat(42)}b`));
    expect(describeApiKey(raw)).toMatchObject({ raw, prefix: 'fg_aaaaa', last4: 'aaaa' });
  });

  it.each([
    ['', false],
    ['fg_', false],
    [`fg_${'a'.repeat(42)}`, false],
    [`fg_${'a'.repeat(44)}`, false],
    [`sk_${'a'.repeat(43)}`, false],
    [`FG_${'a'.repeat(43)}`, false],
    [`fg_${'a'.repeat(42)}=`, false],
    [`fg_${'a'.repeat(42)}+`, false],
    [`fg_${'a'.repeat(42)} `, false],
    [`fg_${'a'.repeat(41)}-_`, true],
  ])('isApiKeyFormat(%j) = %s', (value, expected) => {
    expect(isApiKeyFormat(value)).toBe(expected);
  });

  it('masks as prefix…last4', () => {
    expect(maskApiKey('fg_AbCdE', 'wxyz')).toBe('fg_AbCdE…wxyz');
  });
});
