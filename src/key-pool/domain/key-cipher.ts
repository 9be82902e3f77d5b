import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import type { EncryptionKey } from '../../config/app-config.js';

/**
 * Upstream key values at rest: AES-256-GCM, a fresh 12-byte IV per value, the 16-byte tag pinned
 * (`authTagLength: 16`, so a truncated tag is refused instead of weakening the check), and the row
 * id as additional authenticated data (a ciphertext copied onto another row does not decrypt).
 *
 * Stored form: `v1.<iv b64url>.<ciphertext b64url>.<tag b64url>` plus, in its own column, the id of
 * the ENCRYPTION_KEYS entry that sealed it. The first keyring entry is current: new values use it,
 * and the start-up heal moves every other row onto it.
 */
export class DecryptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecryptError';
  }
}

export interface Sealed {
  keyId: string;
  ciphertext: string;
}

const VERSION = 'v1';
const FINGERPRINT_LABEL = 'floodgate encryption key fingerprint v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class KeyCipher {
  private readonly byId: Map<string, Buffer>;

  constructor(private readonly keyring: readonly EncryptionKey[]) {
    if (keyring.length === 0) throw new Error('KeyCipher needs at least one encryption key');
    for (const k of keyring)
      if (k.key.length !== 32) throw new Error(`encryption key ${k.id} is not 32 bytes`);
    this.byId = new Map(keyring.map((k) => [k.id, k.key]));
  }

  get currentKeyId(): string {
    return this.keyring[0]!.id;
  }

  has(keyId: string): boolean {
    return this.byId.has(keyId);
  }

  /**
   * Each configured key's fingerprint: HMAC-SHA256 keyed by the material over a fixed label (hex).
   * Equal material gives equal fingerprints on every instance; the material cannot be recovered from it.
   */
  fingerprints(): { id: string; fingerprint: string }[] {
    return this.keyring.map((k) => ({
      id: k.id,
      fingerprint: createHmac('sha256', k.key).update(FINGERPRINT_LABEL).digest('hex'),
    }));
  }

  encrypt(plaintext: string, aad: string): Sealed {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.keyring[0]!.key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return {
      keyId: this.currentKeyId,
      ciphertext: [
        VERSION,
        iv.toString('base64url'),
        body.toString('base64url'),
        tag.toString('base64url'),
      ].join('.'),
    };
  }

  /**
   * Decrypts with the key the row names; if that id is unknown (renamed in ENCRYPTION_KEYS) the other
   * keys are tried — GCM authentication makes a wrong key fail, never produce garbage.
   * Throws DecryptError (never with key material in the message).
   */
  decrypt(sealed: Sealed, aad: string): string {
    const parts = sealed.ciphertext.split('.');
    if (parts.length !== 4 || parts[0] !== VERSION)
      throw new DecryptError('ciphertext is not in the v1 format');
    const [, ivB64, bodyB64, tagB64] = parts as [string, string, string, string];
    const iv = Buffer.from(ivB64, 'base64url');
    const body = Buffer.from(bodyB64, 'base64url');
    const tag = Buffer.from(tagB64, 'base64url');
    if (iv.length !== IV_BYTES) throw new DecryptError(`IV must be ${IV_BYTES} bytes, got ${iv.length}`);
    if (tag.length !== TAG_BYTES)
      throw new DecryptError(`authentication tag must be ${TAG_BYTES} bytes, got ${tag.length}`);
    const named = this.byId.get(sealed.keyId);
    const order = named
      ? [named, ...this.keyring.filter((k) => k.id !== sealed.keyId).map((k) => k.key)]
      : this.keyring.map((k) => k.key);
    for (const key of order) {
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
        decipher.setAAD(Buffer.from(aad, 'utf8'));
        decipher.setAuthTag(tag);
        return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
      } catch {
        // wrong key or tampered data: try the next key
      }
    }
    throw new DecryptError(
      named
        ? `authentication failed under key "${sealed.keyId}" and every other configured key (tampered or wrong key)`
        : `key "${sealed.keyId}" is not in ENCRYPTION_KEYS and no configured key authenticates the value`,
    );
  }
}

/** The AAD binding a ciphertext to its row. */
export function providerKeyAad(rowId: string): string {
  return `provider_key:${rowId}`;
}

/** `sk-…abcd`: enough to recognise a key, never enough to use it. Short values show only the last 2. */
export function maskKey(value: string): string {
  const dash = value.indexOf('-');
  const prefix = dash > 0 && dash <= 7 && value.length >= 16 ? value.slice(0, dash + 1) : '';
  const tail = value.length >= 16 ? value.slice(-4) : value.length >= 8 ? value.slice(-2) : '';
  return `${prefix}…${tail}`;
}
