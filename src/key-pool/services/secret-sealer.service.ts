import { Injectable } from '@nestjs/common';
import { KeyCipher } from '../domain/key-cipher.js';

/** A value sealed at rest: the ENCRYPTION_KEYS entry's id and the `v1.…` ciphertext. */
export interface SealedSecret {
  keyId: string;
  ciphertext: string;
}

/**
 * KeyPool's cipher for other modules' secrets at rest (webhook signing secrets): the same
 * AES-256-GCM keyring as upstream keys (ENCRYPTION_KEYS, first entry current), the caller's AAD
 * binding a ciphertext to its row. `open` throws when no configured key authenticates the value.
 */
@Injectable()
export class SecretSealerService {
  constructor(private readonly cipher: KeyCipher) {}

  get currentKeyId(): string {
    return this.cipher.currentKeyId;
  }

  seal(plaintext: string, aad: string): SealedSecret {
    return this.cipher.encrypt(plaintext, aad);
  }

  open(sealed: SealedSecret, aad: string): string {
    return this.cipher.decrypt(sealed, aad);
  }
}
