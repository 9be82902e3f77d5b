import { Init1763769600000 } from './1763769600000-Init.js';

/** Every migration, in order. Imported explicitly (no globs) so ESM builds and tests load the same list. */
export const MIGRATIONS = [Init1763769600000];
