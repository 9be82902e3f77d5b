import { Init1763769600000 } from './1763769600000-Init.js';
import { AuditLog1763769700000 } from './1763769700000-AuditLog.js';

/** Every migration, in order. Imported explicitly (no globs) so ESM builds and tests load the same list. */
export const MIGRATIONS = [
  Init1763769600000,
  AuditLog1763769700000,
  // new migrations: append below, in timestamp order
];
