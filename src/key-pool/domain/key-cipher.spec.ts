import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DecryptError, KeyCipher, maskKey, providerKeyAad } from './key-cipher.js';

const OLD = { id: 'old', key: randomBytes(32) };
const NEW = { id: 'new', key: randomBytes(32) };
const AAD = providerKeyAad('5d0f3c7e-7b1a-4f3e-9a51-2b8f1c0e6d42');
const SECRET = 'sk-proj-abcdefghijklmnopqrstuvwxyz0123456789';

function parts(ciphertext: string): string[] {
  return ciphertext.split('.');
}

function flipByte(b64: string, index = 0): string {
  const buf = Buffer.from(b64, 'base64url');
  buf[index] = buf[index]! ^ 0x01;
  return buf.toString('base64url');
}

describe('KeyCipher', () => {
  it('round-trips, with a fresh 12-byte IV and a 16-byte tag every time', () => {
    const c = new KeyCipher([NEW]);
    const a = c.encrypt(SECRET, AAD);
    const b = c.encrypt(SECRET, AAD);
    expect(a.keyId).toBe('new');
    expect(a.ciphertext).not.toContain(SECRET);
    expect(a.ciphertext).not.toBe(b.ciphertext);
    const [version, iv, , tag] = parts(a.ciphertext);
    expect(version).toBe('v1');
    expect(Buffer.from(iv!, 'base64url')).toHaveLength(12);
    expect(Buffer.from(tag!, 'base64url')).toHaveLength(16);
    expect(c.decrypt(a, AAD)).toBe(SECRET);
  });

  it.each([
    ['IV', 1],
    ['ciphertext', 2],
    ['tag', 3],
  ])('a flipped byte in the %s fails', (_what, index) => {
    const c = new KeyCipher([NEW]);
    const sealed = c.encrypt(SECRET, AAD);
    const p = parts(sealed.ciphertext);
    p[index] = flipByte(p[index]!);
    expect(() => c.decrypt({ ...sealed, ciphertext: p.join('.') }, AAD)).toThrow(DecryptError);
  });

  it('a truncated tag fails (authTagLength is pinned to 16), even a valid 12-byte prefix', () => {
    const c = new KeyCipher([NEW]);
    const sealed = c.encrypt(SECRET, AAD);
    const p = parts(sealed.ciphertext);
    p[3] = Buffer.from(p[3]!, 'base64url').subarray(0, 12).toString('base64url');
    expect(() => c.decrypt({ ...sealed, ciphertext: p.join('.') }, AAD)).toThrow(
      /authentication tag must be 16 bytes/,
    );
  });

  it('a ciphertext moved to another row (different AAD) fails', () => {
    const c = new KeyCipher([NEW]);
    const sealed = c.encrypt(SECRET, AAD);
    expect(() => c.decrypt(sealed, providerKeyAad('00000000-0000-0000-0000-000000000001'))).toThrow(
      DecryptError,
    );
  });

  it('keyring: values under an older key decrypt; new values use the first key; a removed key fails', () => {
    const before = new KeyCipher([OLD]).encrypt(SECRET, AAD);
    const ring = new KeyCipher([NEW, OLD]);
    expect(ring.currentKeyId).toBe('new');
    expect(ring.decrypt(before, AAD)).toBe(SECRET);
    expect(ring.encrypt(SECRET, AAD).keyId).toBe('new');
    // a renamed key id still decrypts (GCM authenticates the right key)
    expect(ring.decrypt({ ...before, keyId: 'renamed' }, AAD)).toBe(SECRET);
    expect(() => new KeyCipher([NEW]).decrypt(before, AAD)).toThrow(
      /not in ENCRYPTION_KEYS|authentication failed/,
    );
  });

  it('error messages never contain key material or plaintext', () => {
    const c = new KeyCipher([NEW]);
    try {
      c.decrypt({ keyId: 'new', ciphertext: 'v1.AAAA.BBBB.CCCC' }, AAD);
    } catch (err) {
      expect((err as Error).message).not.toContain(NEW.key.toString('base64'));
    }
    expect(() => c.decrypt({ keyId: 'new', ciphertext: SECRET }, AAD)).toThrow(
      'ciphertext is not in the v1 format',
    );
  });
});

describe('maskKey', () => {
  it.each([
    ['sk-proj-abcdefghijklmnop1234', 'sk-…1234'],
    ['sk-abcdefghijklmnopqrstuvwxyzabcd', 'sk-…abcd'],
    ['AIzaSyA1234567890abcdefgh', '…efgh'],
    ['short12345', '…45'],
    ['tiny', '…'],
  ])('%s → %s', (value, masked) => {
    expect(maskKey(value)).toBe(masked);
  });
});

describe('KeyCipher.fingerprints', () => {
  it('equal material → equal fingerprint on every instance; other material → another; never the material', () => {
    const a = new KeyCipher([OLD, NEW]).fingerprints();
    const b = new KeyCipher([{ id: 'old', key: Buffer.from(OLD.key) }]).fingerprints();
    const other = new KeyCipher([{ id: 'old', key: randomBytes(32) }]).fingerprints();
    expect(a.map((f) => f.id)).toEqual(['old', 'new']);
    expect(b[0]!.fingerprint).toBe(a[0]!.fingerprint);
    expect(other[0]!.fingerprint).not.toBe(a[0]!.fingerprint);
    expect(a[0]!.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    for (const f of a) {
      expect(f.fingerprint).not.toContain(OLD.key.toString('hex'));
      expect(f.fingerprint).not.toContain(NEW.key.toString('hex'));
    }
  });
});
