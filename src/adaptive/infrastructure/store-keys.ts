import { keyStateKey } from '../../key-pool/key-pool.types.js';

/**
 * Adaptive's store keys (layout: adaptive.scripts.ts). Every key of a provider shares the hash tag
 * {providerId} with KeyPool's keys, so the scripts composed with KeyPool's stay in one slot.
 */
export function adaptiveKeyStateKey(providerId: string, keyId: string): string {
  return `ad:{${providerId}}:k:${keyId}`;
}
export function retreatStateKey(providerId: string): string {
  return `ad:{${providerId}}:rt`;
}
export function retreatWindowKey(providerId: string): string {
  return `ad:{${providerId}}:rw`;
}
/** KEYS of the learning scripts for one key. */
export function learnKeys(providerId: string, keyId: string): [string, string] {
  return [keyStateKey(providerId, keyId), adaptiveKeyStateKey(providerId, keyId)];
}
